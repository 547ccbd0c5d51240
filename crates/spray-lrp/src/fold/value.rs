//! A constant tensor of any fixed-size ONNX element type, kept as its little-endian bytes so
//! that folding never changes a value's type or bits (spray_onnx's `Tensor` widens every float
//! to f32 and every integer to i64, which suits reading weights but not rewriting a graph).

use spray_onnx::{data_type, TensorProto};

/// `TensorProto.DataType` values beyond those spray_onnx names.
pub(crate) mod elem {
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// A constant tensor: element type, dimensions and raw little-endian element bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub elem_type: i32,
    pub dims: Vec<i64>,
    pub bytes: Vec<u8>,
}

/// Bytes per element, for the fixed-size element types.
pub(crate) fn element_size(elem_type: i32) -> Option<usize> {
    match elem_type {
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => Some(1),
        elem::UINT16 | elem::INT16 | data_type::FLOAT16 | elem::BFLOAT16 => Some(2),
        data_type::FLOAT | data_type::INT32 | elem::UINT32 => Some(4),
        data_type::INT64 | data_type::DOUBLE | elem::UINT64 => Some(8),
        _ => None,
    }
}

/// Integer types whose every value fits an i64 (so arithmetic on i64 and truncation back to
/// the type is exactly ONNX Runtime's two's-complement arithmetic). Bool counts as 0/1.
fn fits_i64(elem_type: i32) -> bool {
    matches!(
        elem_type,
        data_type::UINT8
            | data_type::INT8
            | elem::UINT16
            | elem::INT16
            | data_type::INT32
            | elem::UINT32
            | data_type::INT64
            | data_type::BOOL
    )
}

pub(crate) fn is_integer(elem_type: i32) -> bool {
    fits_i64(elem_type) && elem_type != data_type::BOOL
}

impl Value {
    pub fn numel(&self) -> usize {
        self.dims.iter().product::<i64>().max(0) as usize
    }

    pub fn element_size(&self) -> usize {
        element_size(self.elem_type).expect("a Value has a fixed-size element type")
    }

    /// An int64 tensor.
    pub fn i64s(dims: Vec<i64>, values: &[i64]) -> Value {
        Value {
            elem_type: data_type::INT64,
            dims,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A tensor of integer (or bool) type `elem_type` holding `values`, each truncated to the
    /// type's width as a C++ static_cast does (bool: non-zero is true).
    pub fn from_ints(elem_type: i32, dims: Vec<i64>, values: &[i64]) -> Option<Value> {
        let size = element_size(elem_type)?;
        if !fits_i64(elem_type) {
            return None;
        }
        let mut bytes = Vec::with_capacity(values.len() * size);
        for &v in values {
            if elem_type == data_type::BOOL {
                bytes.push(u8::from(v != 0));
            } else {
                bytes.extend_from_slice(&v.to_le_bytes()[..size]);
            }
        }
        Some(Value {
            elem_type,
            dims,
            bytes,
        })
    }

    /// The elements as i64, for integer and bool tensors.
    pub fn ints(&self) -> Option<Vec<i64>> {
        if !fits_i64(self.elem_type) {
            return None;
        }
        let size = self.element_size();
        let signed = matches!(
            self.elem_type,
            data_type::INT8 | elem::INT16 | data_type::INT32 | data_type::INT64
        );
        Some(
            self.bytes
                .chunks_exact(size)
                .map(|c| {
                    let fill = if signed && c[size - 1] & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    };
                    let mut b = [fill; 8];
                    b[..size].copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect(),
        )
    }

    /// Decode an initializer or `Constant` value. `None` for strings and malformed payloads
    /// (which stay in the graph as they are).
    pub fn from_proto(proto: &TensorProto) -> Option<Value> {
        let size = element_size(proto.data_type)?;
        let numel = proto.dims.iter().product::<i64>().max(0) as usize;
        let bytes: Vec<u8> = if !proto.raw_data.is_empty() {
            proto.raw_data.clone()
        } else {
            match proto.data_type {
                data_type::FLOAT => proto
                    .float_data
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                data_type::DOUBLE => proto
                    .double_data
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                data_type::INT64 => proto
                    .int64_data
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                elem::UINT32 | elem::UINT64 => proto
                    .uint64_data
                    .iter()
                    .flat_map(|v| v.to_le_bytes()[..size].to_vec())
                    .collect(),
                // int32_data holds every narrower type, one element per entry (float16 and
                // bfloat16 as their bit patterns).
                _ => proto
                    .int32_data
                    .iter()
                    .flat_map(|v| v.to_le_bytes()[..size].to_vec())
                    .collect(),
            }
        };
        (proto.data_location == 0 && bytes.len() == numel * size).then(|| Value {
            elem_type: proto.data_type,
            dims: proto.dims.clone(),
            bytes,
        })
    }

    pub fn to_proto(&self, name: &str) -> TensorProto {
        TensorProto {
            dims: self.dims.clone(),
            data_type: self.elem_type,
            name: name.to_owned(),
            raw_data: self.bytes.clone(),
            ..Default::default()
        }
    }

    /// The same elements under new dimensions (the caller checked that the count matches).
    pub fn with_dims(mut self, dims: Vec<i64>) -> Value {
        self.dims = dims;
        self
    }

    /// A new tensor of this one's type whose element `i` is this one's element `order[i]`.
    pub fn gathered(&self, dims: Vec<i64>, order: &[usize]) -> Value {
        let size = self.element_size();
        let mut bytes = Vec::with_capacity(order.len() * size);
        for &i in order {
            bytes.extend_from_slice(&self.bytes[i * size..(i + 1) * size]);
        }
        Value {
            elem_type: self.elem_type,
            dims,
            bytes,
        }
    }
}

/// Elements of a tensor with dimensions `dims`: the row-major strides.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    strides
}

/// Dimensions as `usize`; `None` if any is negative.
pub(crate) fn udims(dims: &[i64]) -> Option<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_through_every_width() {
        for t in [
            data_type::INT8,
            data_type::UINT8,
            elem::INT16,
            elem::UINT16,
            data_type::INT32,
            elem::UINT32,
            data_type::INT64,
        ] {
            let v = Value::from_ints(t, vec![3], &[0, 1, 100]).unwrap();
            assert_eq!(v.ints().unwrap(), vec![0, 1, 100], "type {t}");
        }
        let negative = Value::from_ints(data_type::INT32, vec![2], &[-1, -7]).unwrap();
        assert_eq!(negative.ints().unwrap(), vec![-1, -7]);
        // static_cast to uint8 wraps.
        let wrapped = Value::from_ints(data_type::UINT8, vec![1], &[-1]).unwrap();
        assert_eq!(wrapped.ints().unwrap(), vec![255]);
        let truth = Value::from_ints(data_type::BOOL, vec![2], &[0, 5]).unwrap();
        assert_eq!(truth.bytes, vec![0, 1]);
    }

    #[test]
    fn typed_fields_decode_to_the_same_bytes_as_raw_data() {
        let typed = TensorProto {
            dims: vec![2],
            data_type: data_type::INT32,
            int32_data: vec![-3, 4],
            ..Default::default()
        };
        let raw = Value::from_proto(&typed).unwrap();
        assert_eq!(raw.ints().unwrap(), vec![-3, 4]);
        assert_eq!(Value::from_proto(&raw.to_proto("x")).unwrap(), raw);
        let short = TensorProto {
            dims: vec![3],
            data_type: data_type::FLOAT,
            float_data: vec![1.0],
            ..Default::default()
        };
        assert!(Value::from_proto(&short).is_none());
    }
}

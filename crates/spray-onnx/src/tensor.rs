//! Decoding and encoding `TensorProto` payloads.

use crate::proto::{data_type, TensorProto};
use crate::OnnxError;

/// The element data of a tensor, decoded into a native vector.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A decoded constant tensor (initializer or `Constant` value).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(dims: Vec<i64>, values: Vec<f32>) -> Self {
        Tensor {
            dims,
            data: TensorData::F32(values),
        }
    }
    pub fn i64(dims: Vec<i64>, values: Vec<i64>) -> Self {
        Tensor {
            dims,
            data: TensorData::I64(values),
        }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product::<i64>().max(0) as usize
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::I64(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            TensorData::F32(_) => None,
        }
    }

    /// Decode a `TensorProto`. Float types (f32, f64, f16) become f32; integer types i64.
    pub fn from_proto(proto: &TensorProto) -> Result<Self, OnnxError> {
        let fail = |reason: &str| OnnxError::Tensor {
            name: proto.name.clone(),
            reason: reason.to_owned(),
        };
        let numel: usize = proto.dims.iter().product::<i64>().max(0) as usize;
        let raw = &proto.raw_data;
        let data = match proto.data_type {
            data_type::FLOAT => TensorData::F32(if !raw.is_empty() {
                chunks(raw, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            } else {
                proto.float_data.clone()
            }),
            data_type::DOUBLE => TensorData::F32(if !raw.is_empty() {
                chunks(raw, 8, |b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
            } else {
                proto.double_data.iter().map(|v| *v as f32).collect()
            }),
            data_type::FLOAT16 => TensorData::F32(if !raw.is_empty() {
                chunks(raw, 2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            } else {
                proto
                    .int32_data
                    .iter()
                    .map(|v| f16_to_f32(*v as u16))
                    .collect()
            }),
            data_type::INT64 => TensorData::I64(if !raw.is_empty() {
                chunks(raw, 8, |b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                })
            } else {
                proto.int64_data.clone()
            }),
            data_type::INT32 => TensorData::I64(if !raw.is_empty() {
                chunks(raw, 4, |b| {
                    i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                })
            } else {
                proto.int32_data.iter().map(|v| *v as i64).collect()
            }),
            data_type::INT8 | data_type::UINT8 | data_type::BOOL => {
                let signed = proto.data_type == data_type::INT8;
                TensorData::I64(if !raw.is_empty() {
                    raw.iter()
                        .map(|b| if signed { *b as i8 as i64 } else { *b as i64 })
                        .collect()
                } else {
                    proto.int32_data.iter().map(|v| *v as i64).collect()
                })
            }
            other => return Err(fail(&format!("unsupported element type {other}"))),
        };
        let len = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        };
        if len != numel {
            return Err(fail(&format!(
                "holds {len} values but its shape {:?} needs {numel}",
                proto.dims
            )));
        }
        Ok(Tensor {
            dims: proto.dims.clone(),
            data,
        })
    }

    /// Encode as a `TensorProto` with little-endian `raw_data`.
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let (data_type, raw_data) = match &self.data {
            TensorData::F32(v) => (
                data_type::FLOAT,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TensorData::I64(v) => (
                data_type::INT64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        TensorProto {
            dims: self.dims.clone(),
            data_type,
            name: name.to_owned(),
            raw_data,
            ..Default::default()
        }
    }
}

fn chunks<T>(raw: &[u8], size: usize, f: impl Fn(&[u8]) -> T) -> Vec<T> {
    raw.chunks_exact(size).map(f).collect()
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) & 1) as u32;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let out = if exp == 0 {
        if frac == 0 {
            sign << 31
        } else {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            (sign << 31) | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        (sign << 31) | (0xff << 23) | (frac << 13)
    } else {
        (sign << 31) | ((exp + 127 - 15) << 23) | (frac << 13)
    };
    f32::from_bits(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip_through_raw_data() {
        let t = Tensor::f32(vec![2, 2], vec![1.0, -2.5, 0.0, 3.25]);
        assert_eq!(Tensor::from_proto(&t.to_proto("w")).unwrap(), t);
    }

    #[test]
    fn typed_fields_decode_without_raw_data() {
        let proto = TensorProto {
            dims: vec![3],
            data_type: data_type::INT64,
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&proto).unwrap().as_i64().unwrap(),
            &[1, -1, 7]
        );
    }

    #[test]
    fn half_precision_values_decode() {
        // 1.0, -2.0, 0.5 in IEEE binary16
        let raw: Vec<u8> = [0x3c00u16, 0xc000, 0x3800]
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect();
        let proto = TensorProto {
            dims: vec![3],
            data_type: data_type::FLOAT16,
            raw_data: raw,
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&proto).unwrap().as_f32().unwrap(),
            &[1.0, -2.0, 0.5]
        );
    }

    #[test]
    fn wrong_length_is_an_error_not_a_panic() {
        let proto = TensorProto {
            dims: vec![4],
            data_type: data_type::FLOAT,
            float_data: vec![1.0],
            name: "bad".into(),
            ..Default::default()
        };
        assert!(Tensor::from_proto(&proto).is_err());
    }
}

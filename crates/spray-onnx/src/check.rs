//! Structural checks of a loaded model, run before anything else touches it.
//!
//! A model file can be damaged in ways protobuf decoding does not notice: an initializer whose
//! payload does not fill its declared shape ("lying dims"), a node that reads a tensor nobody
//! produces or one produced after it (a cycle: ONNX requires topological order), a corrupted
//! checkpoint with NaN weights. ONNX Runtime reports some of these late, with internal
//! messages, and some (NaN weights) not at all: the run then produces NaN relevance. These
//! checks name the tensor or node instead.

use std::collections::HashSet;

use crate::proto::{attribute_type, data_type, GraphProto, ModelProto, TensorProto};
use crate::OnnxError;

/// Bytes per element of the fixed-size element types (None: strings, sub-byte types).
fn element_size(data_type: i32) -> Option<usize> {
    match data_type {
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => Some(1),
        // uint16, int16, float16, bfloat16
        4 | 5 | data_type::FLOAT16 | 16 => Some(2),
        data_type::FLOAT | data_type::INT32 | 12 => Some(4),
        data_type::INT64 | data_type::DOUBLE | 13 => Some(8),
        _ => None,
    }
}

/// Values held in a tensor's typed fields (when `raw_data` is empty).
fn typed_len(t: &TensorProto) -> usize {
    t.float_data
        .len()
        .max(t.int32_data.len())
        .max(t.int64_data.len())
        .max(t.double_data.len())
        .max(t.uint64_data.len())
        .max(t.string_data.len())
}

/// The element count a tensor's dims declare, or an error for negative or overflowing dims.
fn declared_count(t: &TensorProto) -> Result<usize, String> {
    let mut count: usize = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension in shape {:?}", t.dims));
        }
        count = count
            .checked_mul(d as usize)
            .ok_or_else(|| format!("shape {:?} overflows", t.dims))?;
    }
    Ok(count)
}

/// The payload of an initializer or Constant must fill its declared shape exactly.
fn check_payload(t: &TensorProto, what: &str) -> Result<(), OnnxError> {
    let fail = |reason: String| OnnxError::Invalid(format!("{what} '{}': {reason}", t.name));
    if t.data_location == 1 {
        // Still external: load_model resolves it before this check; an in-memory model
        // with unresolved external data is not ours to judge.
        return Ok(());
    }
    let count = declared_count(t).map_err(fail)?;
    if !t.raw_data.is_empty() {
        if let Some(size) = element_size(t.data_type) {
            let want = count.checked_mul(size);
            if want != Some(t.raw_data.len()) {
                return Err(fail(format!(
                    "shape {:?} needs {} bytes of data but the file holds {}",
                    t.dims,
                    want.map_or_else(|| "too many".to_owned(), |w| w.to_string()),
                    t.raw_data.len()
                )));
            }
        }
    } else if element_size(t.data_type).is_some() {
        let held = typed_len(t);
        // float16/bfloat16/int8… travel in int32_data, one per value.
        if held != count {
            return Err(fail(format!(
                "shape {:?} needs {count} values but the file holds {held}",
                t.dims
            )));
        }
    }
    Ok(())
}

/// A constant tensor with NaN or infinite values.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteConstant {
    /// Initializer name, or the output of the `Constant` node.
    pub name: String,
    pub nan: usize,
    pub infinite: usize,
    pub values: usize,
    /// `Conv 'conv1'`-style descriptions of the nodes that read it.
    pub consumers: Vec<String>,
}

impl std::fmt::Display for NonFiniteConstant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' holds", self.name)?;
        if self.nan > 0 {
            write!(f, " {} NaN", self.nan)?;
        }
        if self.infinite > 0 {
            write!(
                f,
                "{} {} infinite",
                if self.nan > 0 { " and" } else { "" },
                self.infinite
            )?;
        }
        write!(f, " of {} values", self.values)?;
        if !self.consumers.is_empty() {
            write!(f, " (read by {})", self.consumers.join(", "))?;
        }
        Ok(())
    }
}

/// Count NaN and infinite values of a floating-point tensor without decoding it into a vector.
fn count_non_finite(t: &TensorProto) -> (usize, usize, usize) {
    let mut nan = 0;
    let mut inf = 0;
    let mut tally = |v: f64| {
        if v.is_nan() {
            nan += 1;
        } else if v.is_infinite() {
            inf += 1;
        }
    };
    let values = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => {
            for b in t.raw_data.chunks_exact(4) {
                tally(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64);
            }
            t.raw_data.len() / 4
        }
        data_type::FLOAT => {
            t.float_data.iter().for_each(|&v| tally(v as f64));
            t.float_data.len()
        }
        data_type::DOUBLE if !t.raw_data.is_empty() => {
            for b in t.raw_data.chunks_exact(8) {
                tally(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]));
            }
            t.raw_data.len() / 8
        }
        data_type::DOUBLE => {
            t.double_data.iter().for_each(|&v| tally(v));
            t.double_data.len()
        }
        data_type::FLOAT16 | 16 => {
            // Both half formats: all exponent bits set means NaN (mantissa ≠ 0) or ±∞.
            let (exp_mask, man_mask) = if t.data_type == data_type::FLOAT16 {
                (0x7c00u16, 0x03ffu16)
            } else {
                (0x7f80u16, 0x007fu16)
            };
            let mut bits = |h: u16| {
                if h & exp_mask == exp_mask {
                    tally(if h & man_mask != 0 {
                        f64::NAN
                    } else {
                        f64::INFINITY
                    });
                }
            };
            if !t.raw_data.is_empty() {
                for b in t.raw_data.chunks_exact(2) {
                    bits(u16::from_le_bytes([b[0], b[1]]));
                }
                t.raw_data.len() / 2
            } else {
                t.int32_data.iter().for_each(|&v| bits(v as u16));
                t.int32_data.len()
            }
        }
        _ => 0,
    };
    (nan, inf, values)
}

/// Every initializer and `Constant` value of the main graph with a NaN or infinite value, in
/// graph order. Infinite constants can be deliberate (a −∞ mask); NaN ones never are.
pub fn non_finite_constants(graph: &GraphProto) -> Vec<NonFiniteConstant> {
    let consumers = |name: &str| -> Vec<String> {
        graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == name))
            .map(crate::NodeExt::describe)
            .collect()
    };
    let mut found = Vec::new();
    let mut visit = |name: &str, t: &TensorProto| {
        let (nan, infinite, values) = count_non_finite(t);
        if nan + infinite > 0 {
            found.push(NonFiniteConstant {
                name: name.to_owned(),
                nan,
                infinite,
                values,
                consumers: consumers(name),
            });
        }
    };
    for t in &graph.initializer {
        visit(&t.name, t);
    }
    for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
        if let (Some(out), Some(t)) = (
            node.output.first(),
            node.attribute
                .iter()
                .find(|a| a.r#type == attribute_type::TENSOR)
                .and_then(|a| a.t.as_ref()),
        ) {
            visit(out, t);
        }
    }
    found
}

/// Check what decoding cannot: the graph has inputs and outputs, every constant's payload fills
/// its shape, every node reads only tensors defined before it (graph inputs, initializers,
/// earlier outputs; this also rejects cycles), and no constant holds a NaN.
pub fn check_model(model: &ModelProto) -> Result<(), OnnxError> {
    let Some(graph) = model.graph.as_ref() else {
        return Err(OnnxError::Invalid("the model has no graph".into()));
    };
    if graph.output.is_empty() {
        return Err(OnnxError::Invalid("the graph declares no outputs".into()));
    }
    for t in &graph.initializer {
        check_payload(t, "initializer")?;
    }
    let mut defined: HashSet<&str> = graph
        .input
        .iter()
        .map(|v| v.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for node in &graph.node {
        if node.op_type == "Constant" {
            if let Some(t) = node
                .attribute
                .iter()
                .find(|a| a.r#type == attribute_type::TENSOR)
                .and_then(|a| a.t.as_ref())
            {
                check_payload(t, "Constant")?;
            }
        }
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(input.as_str()) {
                let later = graph.node.iter().any(|n| n.output.contains(input));
                return Err(OnnxError::Invalid(format!(
                    "{} reads '{input}', which {}",
                    crate::NodeExt::describe(node),
                    if later {
                        "is produced only later in the graph (the nodes are not in \
                         topological order, or form a cycle)"
                    } else {
                        "no node, input or initializer defines"
                    }
                )));
            }
        }
        defined.extend(node.output.iter().map(String::as_str));
    }
    for output in &graph.output {
        if !defined.contains(output.name.as_str()) {
            return Err(OnnxError::Invalid(format!(
                "the graph output '{}' is not computed by any node",
                output.name
            )));
        }
    }
    let nan: Vec<String> = non_finite_constants(graph)
        .into_iter()
        .filter(|c| c.nan > 0)
        .map(|c| c.to_string())
        .collect();
    if !nan.is_empty() {
        return Err(OnnxError::Invalid(format!(
            "the model's weights contain NaN (a corrupted checkpoint?): {}",
            nan.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::OperatorSetIdProto;
    use crate::{data_type, value_info, NodeProto, Tensor};

    fn model(nodes: Vec<NodeProto>, init: Vec<TensorProto>) -> ModelProto {
        let mut graph = GraphProto::default();
        graph
            .input
            .push(value_info("x", data_type::FLOAT, &[Err("N"), Ok(2)]));
        graph
            .output
            .push(value_info("y", data_type::FLOAT, &[Err("N"), Ok(2)]));
        graph.node = nodes;
        graph.initializer = init;
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn node(op: &str, name: &str, inputs: &[&str], out: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_sound_model_passes() {
        let w = Tensor::f32(vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]).to_proto("w");
        let m = model(vec![node("MatMul", "dense", &["x", "w"], "y")], vec![w]);
        check_model(&m).unwrap();
    }

    #[test]
    fn nan_weights_are_named_with_their_consumer() {
        let w = Tensor::f32(vec![2, 2], vec![1.0, f32::NAN, 0.0, 1.0]).to_proto("w");
        let m = model(vec![node("MatMul", "dense", &["x", "w"], "y")], vec![w]);
        let e = check_model(&m).unwrap_err().to_string();
        assert!(e.contains("'w' holds 1 NaN of 4 values"), "{e}");
        assert!(e.contains("MatMul 'dense'"), "{e}");
    }

    #[test]
    fn infinite_weights_are_reported_but_allowed() {
        let w = Tensor::f32(vec![2, 2], vec![1.0, f32::NEG_INFINITY, 0.0, 1.0]).to_proto("w");
        let m = model(vec![node("MatMul", "dense", &["x", "w"], "y")], vec![w]);
        check_model(&m).unwrap();
        let found = non_finite_constants(m.graph.as_ref().unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].nan, found[0].infinite), (0, 1));
    }

    #[test]
    fn lying_dims_are_refused() {
        let mut w = Tensor::f32(vec![2, 2], vec![1.0; 4]).to_proto("w");
        w.dims = vec![2, 3];
        let m = model(vec![node("MatMul", "dense", &["x", "w"], "y")], vec![w]);
        let e = check_model(&m).unwrap_err().to_string();
        assert!(
            e.contains("initializer 'w'") && e.contains("24 bytes"),
            "{e}"
        );
        let mut w = Tensor::f32(vec![2, 2], vec![1.0; 4]).to_proto("w");
        w.dims = vec![-1, 4];
        let m = model(vec![node("MatMul", "dense", &["x", "w"], "y")], vec![w]);
        assert!(check_model(&m)
            .unwrap_err()
            .to_string()
            .contains("negative"));
    }

    #[test]
    fn cycles_and_dangling_reads_are_refused() {
        let cyclic = model(
            vec![
                node("Add", "a", &["x", "b_out"], "a_out"),
                node("Relu", "b", &["a_out"], "b_out"),
                node("Identity", "c", &["b_out"], "y"),
            ],
            vec![],
        );
        let e = check_model(&cyclic).unwrap_err().to_string();
        assert!(
            e.contains("Add 'a' reads 'b_out'") && e.contains("cycle"),
            "{e}"
        );
        let dangling = model(vec![node("Add", "a", &["x", "ghost"], "y")], vec![]);
        let e = check_model(&dangling).unwrap_err().to_string();
        assert!(e.contains("'ghost'") && e.contains("no node"), "{e}");
        let no_output = model(vec![node("Relu", "a", &["x"], "z")], vec![]);
        assert!(check_model(&no_output)
            .unwrap_err()
            .to_string()
            .contains("output 'y'"));
    }
}

//! The LRP compiler's constant evaluator, backed by ONNX Runtime: the part of a model's
//! input-independent subgraph that the compiler does not evaluate itself (floating-point
//! arithmetic, any other op) runs once through ORT's own CPU kernels, so every folded constant
//! is bit-identical to what ORT computes when it runs the model.

use std::error::Error;

use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::{DynValue, TensorElementType, ValueType};
use spray_onnx::{data_type, ModelProto, TensorProto};

use crate::runtime::{environment, Device};

/// Evaluates input-free ONNX graphs with ONNX Runtime on the CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrtConstantEvaluator {
    /// The device the compiled model will run on: it decides which ONNX Runtime build the
    /// process loads (a process keeps the first one). Evaluation itself runs on the CPU.
    pub device: Device,
}

impl OrtConstantEvaluator {
    pub fn new(device: Device) -> Self {
        OrtConstantEvaluator { device }
    }
}

type BoxError = Box<dyn Error + Send + Sync>;

impl spray_lrp::ConstantEvaluator for OrtConstantEvaluator {
    fn evaluate(&self, model: &ModelProto) -> Result<Vec<TensorProto>, BoxError> {
        let env = environment(self.device)?;
        let bytes = spray_onnx::encode_model(model);
        // No graph rewrites: ORT would only fold the same graph with the same kernels.
        let mut session = Session::builder(&env)
            .map_err(ort_error)?
            .with_optimization_level(GraphOptimizationLevel::Disable)
            .map_err(ort_error)?
            .with_intra_threads(1)
            .map_err(ort_error)?
            .commit_from_memory(&bytes)
            .map_err(ort_error)?;
        let no_inputs: [ort::session::SessionInputValue<'_>; 0] = [];
        let outputs = session.run(no_inputs).map_err(ort_error)?;
        let graph = model
            .graph
            .as_ref()
            .ok_or("the constant model has no graph")?;
        graph
            .output
            .iter()
            .map(|o| {
                let value = outputs
                    .get(o.name.as_str())
                    .ok_or_else(|| format!("ONNX Runtime returned no '{}'", o.name))?;
                to_proto(&o.name, value)
            })
            .collect()
    }
}

fn ort_error<R>(e: ort::Error<R>) -> BoxError {
    crate::clean_ort_message(e.message()).into()
}

/// An ORT output as a `TensorProto` with `raw_data`, keeping its element type.
fn to_proto(name: &str, value: &DynValue) -> Result<TensorProto, BoxError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("'{name}' is not a tensor").into());
    };
    fn raw<T: ort::value::PrimitiveTensorElementType + Copy, const N: usize>(
        value: &DynValue,
        bytes: impl Fn(T) -> [u8; N],
    ) -> Result<(Vec<i64>, Vec<u8>), BoxError> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(ort_error)?;
        Ok((
            shape.iter().copied().collect(),
            data.iter().flat_map(|v| bytes(*v)).collect(),
        ))
    }
    let (elem_type, (dims, raw_data)) = match ty {
        TensorElementType::Float32 => (data_type::FLOAT, raw(value, f32::to_le_bytes)?),
        TensorElementType::Float64 => (data_type::DOUBLE, raw(value, f64::to_le_bytes)?),
        TensorElementType::Int64 => (data_type::INT64, raw(value, i64::to_le_bytes)?),
        TensorElementType::Int32 => (data_type::INT32, raw(value, i32::to_le_bytes)?),
        TensorElementType::Int16 => (5, raw(value, i16::to_le_bytes)?),
        TensorElementType::Int8 => (data_type::INT8, raw(value, i8::to_le_bytes)?),
        TensorElementType::Uint64 => (13, raw(value, u64::to_le_bytes)?),
        TensorElementType::Uint32 => (12, raw(value, u32::to_le_bytes)?),
        TensorElementType::Uint16 => (4, raw(value, u16::to_le_bytes)?),
        TensorElementType::Uint8 => (data_type::UINT8, raw(value, u8::to_le_bytes)?),
        TensorElementType::Bool => (data_type::BOOL, raw(value, |b: bool| [u8::from(b)])?),
        other => {
            return Err(
                format!("'{name}' has element type {other:?}, which spray does not fold").into(),
            )
        }
    };
    Ok(TensorProto {
        dims,
        data_type: elem_type,
        name: name.to_owned(),
        raw_data,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use spray_lrp::ConstantEvaluator;
    use spray_onnx::proto::OperatorSetIdProto;
    use spray_onnx::{attr, GraphProto, NodeProto, Tensor, ValueInfoProto};

    use super::*;

    fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: inits,
                output: outputs
                    .iter()
                    .map(|o| ValueInfoProto {
                        name: (*o).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<spray_onnx::AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    #[test]
    fn float_arithmetic_and_casts_come_back_typed() {
        let m = model(
            vec![
                node("Cast", &["k"], "kf", vec![attr::int("to", 1)]),
                node("Div", &["kf", "two"], "half", vec![]),
                node("Ceil", &["half"], "up", vec![]),
                node("Cast", &["up"], "pads", vec![attr::int("to", 7)]),
                node("Less", &["kf", "two"], "small", vec![]),
            ],
            vec![
                Tensor::i64(vec![3], vec![1, 2, 5]).to_proto("k"),
                Tensor::f32(vec![], vec![2.0]).to_proto("two"),
            ],
            &["half", "pads", "small"],
        );
        let out = OrtConstantEvaluator::default().evaluate(&m).unwrap();
        let half = Tensor::from_proto(&out[0]).unwrap();
        assert_eq!(half.as_f32().unwrap(), &[0.5, 1.0, 2.5]);
        assert_eq!(out[1].data_type, data_type::INT64);
        assert_eq!(
            Tensor::from_proto(&out[1]).unwrap().as_i64().unwrap(),
            &[1, 1, 3]
        );
        assert_eq!(
            (out[2].data_type, out[2].raw_data.clone()),
            (data_type::BOOL, vec![1, 0, 0])
        );
        assert_eq!(out[0].name, "half");
    }

    #[test]
    fn a_broken_graph_is_an_error_not_a_panic() {
        let m = model(
            vec![node("Div", &["a", "missing"], "y", vec![])],
            vec![Tensor::f32(vec![], vec![1.0]).to_proto("a")],
            &["y"],
        );
        assert!(OrtConstantEvaluator::default().evaluate(&m).is_err());
    }
}

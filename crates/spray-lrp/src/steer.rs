//! The forward half steered at a concept layer: the model's logits with an offset added to one
//! intermediate activation, and that activation as it was before the offset. Why: a model-side
//! evidence test (the verify stage's `FeatureDirection`) asks what the model does when a group's
//! direction in feature space is removed from its images or added to other classes' — which
//! needs the activation read out and written back, for any topology (a residual branch, a skip
//! that bypasses the layer), without a second copy of the network.

use spray_onnx::proto::{TypeProto, TypeProtoTensor};
use spray_onnx::{data_type, ModelProto, NodeProto, ValueInfoProto};

use crate::compile::LrpModel;
use crate::LrpError;

/// A model with inputs (`input`, `offset`) and outputs (`logits`, `activation`): `activation`
/// is the concept layer's output for `input` (`[N, C, ...]`), `logits` what the network
/// computes from `activation + offset` (the offset broadcasts: `[1, C, ...]` adds one direction
/// to every sample).
#[derive(Debug, Clone)]
pub struct SteeredModel {
    pub model: ModelProto,
    pub input: String,
    pub offset: String,
    pub logits: String,
    pub activation: String,
}

impl LrpModel {
    /// The forward half ([`LrpModel::forward_model`]) steered at concept layer `layer`
    /// (`signature.concept.layers[layer]`). Refused when the model has no such layer or the
    /// logits do not depend on it.
    pub fn steered_model(&self, layer: usize) -> Result<SteeredModel, LrpError> {
        let concept = self
            .signature
            .concept
            .as_ref()
            .and_then(|c| c.layers.get(layer))
            .ok_or_else(|| {
                LrpError::Model(format!("the model has no concept layer {layer} to steer"))
            })?;
        let tensor = concept.tensor.clone();
        let mut model = self.forward_model();
        let graph = model
            .graph
            .as_mut()
            .ok_or_else(|| LrpError::Model("the model has no graph".into()))?;
        let at = graph
            .node
            .iter()
            .position(|n| n.output.contains(&tensor))
            .ok_or_else(|| {
                LrpError::Model(format!(
                    "the logits do not depend on the concept layer '{}' (tensor '{tensor}')",
                    concept.node
                ))
            })?;
        let raw = format!("{tensor}::activation");
        let offset = format!("{tensor}::offset");
        for out in graph.node[at].output.iter_mut().filter(|o| **o == tensor) {
            *out = raw.clone();
        }
        graph.node.insert(
            at + 1,
            NodeProto {
                op_type: "Add".into(),
                name: format!("{tensor}::steer"),
                input: vec![raw.clone(), offset.clone()],
                output: vec![tensor.clone()],
                ..Default::default()
            },
        );
        // The declared rank, every dimension free (an offset of batch 1 broadcasts).
        let rank = graph
            .value_info
            .iter()
            .find(|v| v.name == tensor)
            .and_then(spray_onnx::value_shape)
            .map(|s| s.len());
        graph.input.push(float_tensor(&offset, rank, "offset"));
        graph.output.push(float_tensor(&raw, rank, "activation"));
        Ok(SteeredModel {
            model,
            input: self.signature.input.clone(),
            offset,
            logits: self.signature.logits.clone(),
            activation: raw,
        })
    }
}

/// A float tensor's value info: `rank` free dimensions named `<prefix>_<i>`, or no shape.
fn float_tensor(name: &str, rank: Option<usize>, prefix: &str) -> ValueInfoProto {
    match rank {
        Some(rank) => {
            let dims: Vec<String> = (0..rank).map(|i| format!("{prefix}_{i}")).collect();
            let dims: Vec<Result<i64, &str>> = dims.iter().map(|d| Err(d.as_str())).collect();
            spray_onnx::value_info(name, data_type::FLOAT, &dims)
        }
        None => ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: data_type::FLOAT,
                    shape: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::tests::mlp;
    use crate::{compile, CompileOptions, Composite, CompositeOptions, ConceptLayer};

    fn compiled(concept: Vec<ConceptLayer>) -> LrpModel {
        let composite = Composite::builtin("epsilon-plus", &CompositeOptions::default()).unwrap();
        compile(
            &mlp(),
            &CompileOptions {
                composite,
                input: None,
                concept,
                constant_evaluator: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_offset_is_added_where_the_layer_is_read_and_the_activation_is_read_out() {
        let lrp = compiled(vec![ConceptLayer::Node("h".into())]);
        let steered = lrp.steered_model(0).unwrap();
        let graph = steered.model.graph.as_ref().unwrap();
        let inputs: Vec<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(inputs, [steered.input.as_str(), steered.offset.as_str()]);
        let outputs: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            outputs,
            [steered.logits.as_str(), steered.activation.as_str()]
        );
        // The layer's node writes the activation, the Add right after it writes the tensor
        // every consumer reads.
        let at = graph
            .node
            .iter()
            .position(|n| n.output == [steered.activation.clone()])
            .unwrap();
        let add = &graph.node[at + 1];
        assert_eq!(add.op_type, "Add");
        assert_eq!(
            add.input,
            [steered.activation.clone(), steered.offset.clone()]
        );
        assert!(graph.node[at + 2..]
            .iter()
            .any(|n| n.input.contains(&add.output[0])));
    }

    #[test]
    fn a_model_without_the_layer_is_refused() {
        let lrp = compiled(Vec::new());
        let err = lrp.steered_model(0).unwrap_err().to_string();
        assert!(err.contains("no concept layer 0"), "{err}");
    }
}

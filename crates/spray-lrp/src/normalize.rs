//! Rewrites applied to a copy of the model before the backward pass is built: bring the
//! default-domain opset to one where every op the compiler emits exists, drop inference
//! no-ops, strip a trailing softmax, free a batch dimension fixed at export time, and merge a
//! zero Pad into the convolution after it (`pads.rs`, after constant folding).

mod batch;
mod opset;
mod pads;

use spray_onnx::{GraphProto, NodeExt};

use crate::LrpError;

pub(crate) use batch::relax_fixed_batch;
pub(crate) use opset::{fit_ir_version, upgrade_opset};
pub use opset::{NEWEST_IR_VERSION, NEWEST_OPSET};
pub(crate) use pads::absorb_zero_pads;

/// Dropout is the identity at inference; replacing it removes a version-dependent op.
pub(crate) fn dropout_to_identity(graph: &mut GraphProto) -> Result<(), LrpError> {
    for node in &mut graph.node {
        if node.op_type == "Dropout" && node.domain.is_empty() {
            if node.output.len() > 1 && !node.output[1].is_empty() {
                let mask = node.output[1].clone();
                let used = graph_uses(&graph.output, &mask);
                if used {
                    return Err(LrpError::Model(format!(
                        "{} exposes its mask as a graph output",
                        node.describe()
                    )));
                }
            }
            node.op_type = "Identity".into();
            node.input.truncate(1);
            node.output.truncate(1);
            node.attribute.clear();
        }
    }
    Ok(())
}

fn graph_uses(outputs: &[spray_onnx::ValueInfoProto], name: &str) -> bool {
    outputs.iter().any(|o| o.name == name)
}

/// If the classifier's output comes out of a Softmax or LogSoftmax, return the tensor before
/// it: LRP starts from the pre-softmax logits. The softmax nodes are removed.
pub(crate) fn strip_output_softmax(graph: &mut GraphProto, output: &str) -> String {
    let mut current = output.to_owned();
    loop {
        let Some(pos) = graph.node.iter().position(|n| {
            n.output.first() == Some(&current)
                && matches!(n.op_type.as_str(), "Softmax" | "LogSoftmax")
        }) else {
            return current;
        };
        let consumers = graph
            .node
            .iter()
            .filter(|n| n.input.contains(&current))
            .count();
        if consumers > 0 {
            return current;
        }
        let node = graph.node.remove(pos);
        current = node.input[0].clone();
    }
}

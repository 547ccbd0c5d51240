//! Rewrites applied to a copy of the model before the backward pass is built: bring the
//! default-domain opset to one where every op the compiler emits exists, drop inference
//! no-ops, strip a trailing softmax, free a batch dimension fixed at export time, and merge a
//! zero Pad into the convolution after it (`pads.rs`, after constant folding).

mod opset;
mod pads;

use spray_onnx::{GraphProto, NodeExt, Tensor};

use crate::LrpError;

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

/// A batch dimension fixed at export (torch.onnx.export without `dynamic_axes` fixes it to the
/// example's batch size) is freed so the explainer can batch. Reshape targets that copy the old
/// batch size are rewritten to infer it. Returns whether anything changed.
pub(crate) fn relax_fixed_batch(graph: &mut GraphProto, input: &str) -> bool {
    let Some(info) = graph.input.iter_mut().find(|v| v.name == input) else {
        return false;
    };
    let Some(dim0) = info
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .and_then(|s| s.dim.first_mut())
    else {
        return false;
    };
    let Some(fixed) = dim0.dim_value else {
        return false;
    };
    dim0.dim_value = None;
    dim0.dim_param = Some("N".into());
    for out in &mut graph.output {
        if let Some(d) = out
            .r#type
            .as_mut()
            .and_then(|t| t.tensor_type.as_mut())
            .and_then(|t| t.shape.as_mut())
            .and_then(|s| s.dim.first_mut())
        {
            if d.dim_value == Some(fixed) {
                d.dim_value = None;
                d.dim_param = Some("N".into());
            }
        }
    }
    // Intermediate shapes recorded at export would now contradict the free batch dimension.
    graph.value_info.clear();
    let reshape_shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Reshape" && n.input.len() > 1)
        .map(|n| n.input[1].clone())
        .collect();
    for name in reshape_shapes {
        if let Some(init) = graph.initializer.iter_mut().find(|t| t.name == name) {
            rewrite_batch(init, fixed);
        } else if let Some(node) = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "Constant" && n.output.first() == Some(&name))
        {
            if let Some(t) = node
                .attribute
                .iter_mut()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_mut())
            {
                rewrite_batch(t, fixed);
            }
        }
    }
    true
}

fn rewrite_batch(proto: &mut spray_onnx::TensorProto, fixed: i64) {
    let Ok(t) = Tensor::from_proto(proto) else {
        return;
    };
    let Some(values) = t.as_i64() else { return };
    if values.first() != Some(&fixed) {
        return;
    }
    let mut v = values.to_vec();
    v[0] = if v[1..].contains(&-1) { 0 } else { -1 };
    let name = proto.name.clone();
    *proto = Tensor::i64(t.dims.clone(), v).to_proto(&name);
}

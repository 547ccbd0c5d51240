//! Rewrites applied to a copy of the model before the backward pass is built: bring the
//! default-domain opset to one where every op the compiler emits exists, drop inference
//! no-ops, strip a trailing softmax, and free a batch dimension fixed at export time.

use spray_onnx::{
    attr, proto::OperatorSetIdProto, GraphProto, ModelProto, NodeExt, NodeProto, Tensor,
};

use crate::ops::table;
use crate::LrpError;

/// The opset the backward graph is written in (ScatterElements with `reduction` needs 16,
/// Split with a `split` input 13).
pub(crate) const TARGET_OPSET: i64 = 17;
/// Opset 7 is the oldest with today's broadcasting for Add/Mul/Gemm: the ONNX model zoo's
/// classic classifiers (ResNet, VGG, SqueezeNet, GoogLeNet, AlexNet) are exported at 7–9.
const OLDEST_OPSET: i64 = 7;
/// The newest default-domain opset ONNX Runtime 1.31 supports officially (measured: it refuses
/// 27 as "under development"), so the newest a compiled model can run at; a newer model is
/// refused by name instead of failing inside ORT.
pub const NEWEST_OPSET: i64 = 26;
/// The newest model IR version ONNX Runtime 1.31 reads (measured). A model saved by a newer `onnx`
/// package is declared at this version when nothing in it needs the newer IR (see
/// `fit_ir_version`).
pub const NEWEST_IR_VERSION: i64 = 13;
/// Element types of IR versions up to 8 (float … bfloat16). The later IR versions mostly add
/// element types (float8, int4, float4, …); a model using none of them reads the same at IR 13.
const CLASSIC_ELEMENT_TYPES: std::ops::RangeInclusive<i32> = 1..=16;

/// Upgrade the default-domain opset to at least [`TARGET_OPSET`], converting the ops whose
/// attributes became inputs on the way. Refuses what it cannot convert, naming the nodes.
pub(crate) fn upgrade_opset(model: &mut ModelProto) -> Result<(), LrpError> {
    let version = spray_onnx::default_opset(model).ok_or_else(|| {
        LrpError::Model("the model imports no default-domain (ai.onnx) opset".into())
    })?;
    if version < OLDEST_OPSET {
        return Err(LrpError::Model(format!(
            "the model uses opset {version}; spray supports opset {OLDEST_OPSET} and newer (re-export the model)"
        )));
    }
    if version > NEWEST_OPSET {
        return Err(LrpError::Model(format!(
            "the model uses opset {version}; spray (with ONNX Runtime 1.31) supports opsets \
             {OLDEST_OPSET} to {NEWEST_OPSET}: re-export it at opset {NEWEST_OPSET} or older \
             (torch.onnx.export(..., opset_version={NEWEST_OPSET}))"
        )));
    }
    if version >= TARGET_OPSET {
        return Ok(());
    }
    let graph = model.graph.as_mut().expect("checked by caller");
    let unconvertible: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.domain.is_empty() && !table::survives_opset_upgrade(&n.op_type))
        .map(|n| n.describe())
        .collect();
    if !unconvertible.is_empty() {
        return Err(LrpError::Model(format!(
            "the model uses opset {version} and these ops changed before opset {TARGET_OPSET}, so spray cannot \
             upgrade it: {}; re-export with opset {TARGET_OPSET} or newer",
            unconvertible.join(", ")
        )));
    }
    let mut new_inits = Vec::new();
    let mut counter = 0usize;
    let mut const_input = |values: Tensor, hint: &str, inits: &mut Vec<spray_onnx::TensorProto>| {
        counter += 1;
        let name = format!("lrp/upgrade/{hint}_{counter}");
        inits.push(values.to_proto(&name));
        name
    };
    for node in &mut graph.node {
        if !node.domain.is_empty() {
            continue;
        }
        match node.op_type.as_str() {
            "BatchNormalization" if version < 9 => {
                // Opset 7 and 8 had `spatial` (default 1: one statistic per channel, the only
                // form opset 9 kept).
                if let Some(spatial) = take_attr(node, "spatial") {
                    if spatial.i != 1 {
                        return Err(LrpError::Model(format!(
                            "{} uses spatial={} (per-element statistics), which opset 9 removed; \
                             spray supports per-channel BatchNormalization only",
                            node.describe(),
                            spatial.i
                        )));
                    }
                }
            }
            "Slice" if version < 10 => {
                // starts, ends and axes became inputs in opset 10.
                let starts = take_attr(node, "starts")
                    .map(|a| a.ints)
                    .unwrap_or_default();
                let ends = take_attr(node, "ends").map(|a| a.ints).unwrap_or_default();
                let axes = take_attr(node, "axes")
                    .map(|a| a.ints)
                    .unwrap_or_else(|| (0..starts.len() as i64).collect());
                node.input.truncate(1);
                for (values, hint) in [(starts, "starts"), (ends, "ends"), (axes, "axes")] {
                    let t = Tensor::i64(vec![values.len() as i64], values);
                    let name = const_input(t, hint, &mut new_inits);
                    node.input.push(name);
                }
            }
            "Squeeze" | "Unsqueeze" | "ReduceSum" if version < 13 => {
                if let Some(axes) = take_attr(node, "axes") {
                    let t = Tensor::i64(vec![axes.ints.len() as i64], axes.ints);
                    let name = const_input(t, "axes", &mut new_inits);
                    node.input.truncate(1);
                    node.input.push(name);
                }
            }
            "Split" if version < 13 => {
                if let Some(split) = take_attr(node, "split") {
                    let t = Tensor::i64(vec![split.ints.len() as i64], split.ints);
                    let name = const_input(t, "split", &mut new_inits);
                    node.input.truncate(1);
                    node.input.push(name);
                }
            }
            "Pad" if version < 11 => {
                let pads = take_attr(node, "pads").map(|a| a.ints).unwrap_or_default();
                let value = take_attr(node, "value").map(|a| a.f).unwrap_or(0.0);
                let p = const_input(
                    Tensor::i64(vec![pads.len() as i64], pads),
                    "pads",
                    &mut new_inits,
                );
                let v = const_input(
                    Tensor::f32(vec![], vec![value]),
                    "pad_value",
                    &mut new_inits,
                );
                node.input.truncate(1);
                node.input.extend([p, v]);
            }
            "Clip" if version < 11 => {
                let min = take_attr(node, "min").map(|a| a.f).unwrap_or(f32::MIN);
                let max = take_attr(node, "max").map(|a| a.f).unwrap_or(f32::MAX);
                let lo = const_input(Tensor::f32(vec![], vec![min]), "clip_min", &mut new_inits);
                let hi = const_input(Tensor::f32(vec![], vec![max]), "clip_max", &mut new_inits);
                node.input.truncate(1);
                node.input.extend([lo, hi]);
            }
            "Softmax" | "LogSoftmax" if version < 13 => {
                // Before 13 the input was coerced to 2-D at `axis` (default 1); from 13 the op
                // works along `axis` (default -1). For rank-2 inputs with axis 1 they agree.
                let axis = node.attr_int("axis").unwrap_or(1);
                if axis != 1 && axis != -1 {
                    return Err(LrpError::Model(format!(
                        "{} uses axis {axis} under opset {version}; re-export with opset {TARGET_OPSET}",
                        node.describe()
                    )));
                }
                node.attribute.retain(|a| a.name != "axis");
                node.attribute.push(attr::int("axis", -1));
            }
            _ => {}
        }
    }
    graph.initializer.extend(new_inits);
    set_default_opset(model, TARGET_OPSET);
    Ok(())
}

/// A model saved with an IR version newer than ONNX Runtime reads is declared at
/// [`NEWEST_IR_VERSION`] when its opset (checked by [`upgrade_opset`]) and its element types
/// existed then; otherwise it is refused with the fix named.
pub(crate) fn fit_ir_version(model: &mut ModelProto) -> Result<(), LrpError> {
    if model.ir_version <= NEWEST_IR_VERSION {
        return Ok(());
    }
    let graph = model.graph.as_ref().expect("checked by caller");
    let declared = graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
        .filter_map(|v| spray_onnx::value_elem_type(v).map(|t| (v.name.as_str(), t)));
    let constants = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.data_type));
    if let Some((name, t)) = declared
        .chain(constants)
        .find(|(_, t)| *t != 0 && !CLASSIC_ELEMENT_TYPES.contains(t))
    {
        return Err(LrpError::Model(format!(
            "the model has IR version {} (ONNX Runtime 1.31 reads up to {NEWEST_IR_VERSION}) and \
             '{name}' uses element type {t}, which older IR versions lack; convert the model \
             to float32 and save it with onnx.save after setting model.ir_version = {NEWEST_IR_VERSION}",
            model.ir_version
        )));
    }
    model.ir_version = NEWEST_IR_VERSION;
    Ok(())
}

fn take_attr(node: &mut NodeProto, name: &str) -> Option<spray_onnx::AttributeProto> {
    let pos = node.attribute.iter().position(|a| a.name == name)?;
    Some(node.attribute.remove(pos))
}

fn set_default_opset(model: &mut ModelProto, version: i64) {
    match model
        .opset_import
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        Some(o) => o.version = version,
        None => model.opset_import.push(OperatorSetIdProto {
            domain: String::new(),
            version,
        }),
    }
    // ScatterElements(reduction) and friends need IR version >= 8 to load in ORT.
    if model.ir_version < 8 {
        model.ir_version = 8;
    }
}

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

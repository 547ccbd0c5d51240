//! Versions: the default-domain opset is brought to [`TARGET_OPSET`] (converting the ops whose
//! attributes became inputs on the way), and a model saved at an IR version newer than ONNX
//! Runtime reads is declared at [`NEWEST_IR_VERSION`] where nothing in it needs more.

use spray_onnx::{
    attr, proto::OperatorSetIdProto, AttributeProto, ModelProto, NodeExt, NodeProto, Tensor,
    TensorProto,
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
    let version = supported_opset(model)?;
    if version >= TARGET_OPSET {
        return Ok(());
    }
    let graph = model.graph.as_mut().expect("checked by caller");
    refuse_unconvertible(&graph.node, version)?;
    let mut constants = UpgradeConstants::default();
    for node in &mut graph.node {
        if node.domain.is_empty() {
            upgrade_node(node, version, &mut constants)?;
        }
    }
    graph.initializer.extend(constants.initializers);
    set_default_opset(model, TARGET_OPSET);
    Ok(())
}

/// The model's default-domain opset, refused outside [`OLDEST_OPSET`]..=[`NEWEST_OPSET`].
fn supported_opset(model: &ModelProto) -> Result<i64, LrpError> {
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
    Ok(version)
}

/// Refuse, all named at once, the ops that changed before [`TARGET_OPSET`] in ways the upgrade
/// does not convert (the op table's opset column).
fn refuse_unconvertible(nodes: &[NodeProto], version: i64) -> Result<(), LrpError> {
    let unconvertible: Vec<String> = nodes
        .iter()
        .filter(|n| n.domain.is_empty() && !table::survives_opset_upgrade(&n.op_type))
        .map(|n| n.describe())
        .collect();
    if unconvertible.is_empty() {
        return Ok(());
    }
    Err(LrpError::Model(format!(
        "the model uses opset {version} and these ops changed before opset {TARGET_OPSET}, so spray cannot \
         upgrade it: {}; re-export with opset {TARGET_OPSET} or newer",
        unconvertible.join(", ")
    )))
}

/// The constants that former attributes become, named in the order they are made.
#[derive(Default)]
struct UpgradeConstants {
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl UpgradeConstants {
    /// A new initializer holding `values`; its name.
    fn add(&mut self, values: Tensor, hint: &str) -> String {
        self.counter += 1;
        let name = format!("lrp/upgrade/{hint}_{}", self.counter);
        self.initializers.push(values.to_proto(&name));
        name
    }
}

/// Rewrite one default-domain node written for opset `version` into its opset-17 form.
fn upgrade_node(
    node: &mut NodeProto,
    version: i64,
    constants: &mut UpgradeConstants,
) -> Result<(), LrpError> {
    match node.op_type.as_str() {
        "BatchNormalization" if version < 9 => return drop_spatial(node),
        // starts, ends and axes became inputs in opset 10.
        "Slice" if version < 10 => slice_attributes_to_inputs(node, constants),
        "Squeeze" | "Unsqueeze" | "ReduceSum" if version < 13 => {
            ints_attribute_to_input(node, "axes", constants)
        }
        "Split" if version < 13 => ints_attribute_to_input(node, "split", constants),
        "Pad" if version < 11 => {
            let pads = take_attr(node, "pads").map(|a| a.ints).unwrap_or_default();
            let value = take_attr(node, "value").map(|a| a.f).unwrap_or(0.0);
            let p = constants.add(Tensor::i64(vec![pads.len() as i64], pads), "pads");
            let v = constants.add(Tensor::f32(vec![], vec![value]), "pad_value");
            node.input.truncate(1);
            node.input.extend([p, v]);
        }
        "Clip" if version < 11 => {
            let min = take_attr(node, "min").map(|a| a.f).unwrap_or(f32::MIN);
            let max = take_attr(node, "max").map(|a| a.f).unwrap_or(f32::MAX);
            let lo = constants.add(Tensor::f32(vec![], vec![min]), "clip_min");
            let hi = constants.add(Tensor::f32(vec![], vec![max]), "clip_max");
            node.input.truncate(1);
            node.input.extend([lo, hi]);
        }
        "Softmax" | "LogSoftmax" if version < 13 => return softmax_axis_last(node, version),
        _ => {}
    }
    Ok(())
}

/// Opset 7 and 8 had `spatial` (default 1: one statistic per channel, the only form opset 9
/// kept).
fn drop_spatial(node: &mut NodeProto) -> Result<(), LrpError> {
    match take_attr(node, "spatial") {
        Some(spatial) if spatial.i != 1 => Err(LrpError::Model(format!(
            "{} uses spatial={} (per-element statistics), which opset 9 removed; \
             spray supports per-channel BatchNormalization only",
            node.describe(),
            spatial.i
        ))),
        _ => Ok(()),
    }
}

fn slice_attributes_to_inputs(node: &mut NodeProto, constants: &mut UpgradeConstants) {
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
        node.input.push(constants.add(t, hint));
    }
}

/// An optional ints attribute that became the node's second input.
fn ints_attribute_to_input(node: &mut NodeProto, name: &str, constants: &mut UpgradeConstants) {
    if let Some(values) = take_attr(node, name) {
        let t = Tensor::i64(vec![values.ints.len() as i64], values.ints);
        let input = constants.add(t, name);
        node.input.truncate(1);
        node.input.push(input);
    }
}

/// Before 13 the input was coerced to 2-D at `axis` (default 1); from 13 the op works along
/// `axis` (default -1). For rank-2 inputs with axis 1 they agree.
fn softmax_axis_last(node: &mut NodeProto, version: i64) -> Result<(), LrpError> {
    let axis = node.attr_int("axis").unwrap_or(1);
    if axis != 1 && axis != -1 {
        return Err(LrpError::Model(format!(
            "{} uses axis {axis} under opset {version}; re-export with opset {TARGET_OPSET}",
            node.describe()
        )));
    }
    node.attribute.retain(|a| a.name != "axis");
    node.attribute.push(attr::int("axis", -1));
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

fn take_attr(node: &mut NodeProto, name: &str) -> Option<AttributeProto> {
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

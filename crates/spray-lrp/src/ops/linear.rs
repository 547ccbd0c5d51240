//! Linear layers — Conv, Gemm, MatMul with constant weights — and the LRP rules proper
//! ([`crate::rules`]): a BatchNormalization (and a MatMul's bias Add) that only this layer
//! feeds is folded into it, and the backward step runs through ONNX's own Conv/ConvTranspose/
//! Gemm/MatMul with the weights modified at compile time.

use std::collections::HashMap;

use spray_onnx::{attr, NodeExt, NodeProto, Tensor};

use super::{check_auto_pad, crop_start_only, node_key, Backward, Classified, NodeView, Treatment};
use crate::builder::Builder;
use crate::composite::LayerKind;
use crate::graph::GraphFacts;
use crate::rules::{InputMod, OutputMask, ParamMod, Rule};

#[derive(Debug, Clone, Copy, PartialEq)]
enum LinearOp {
    Conv,
    Gemm,
    MatMul,
}

#[derive(Debug, Clone)]
pub(crate) struct LinearLayer {
    op: LinearOp,
    input: String,
    /// The tensor the layer (with merged BN / bias) produces.
    pub output: String,
    /// Conv: [M, C/g, k...]; dense: [out, in].
    weight: Tensor,
    bias: Option<Vec<f32>>,
    conv_attrs: Vec<spray_onnx::AttributeProto>,
    spatial_rank: usize,
    strided: bool,
    merged: Vec<String>,
}

impl LinearLayer {
    /// Output channels of a convolution or Gemm (the weight's first dimension, on axis 1 of
    /// the output); `None` for MatMul, whose output features sit on the last axis.
    pub(crate) fn out_channels(&self) -> Option<usize> {
        (self.op != LinearOp::MatMul).then(|| self.weight.dims[0] as usize)
    }
}

pub(crate) fn classify(v: &NodeView<'_, '_>) -> Result<Classified, String> {
    v.only_first_input_is_data()?;
    let (layer, absorbed) = linear_layer(v.facts, v.index)?;
    let kind = if v.op() == "Conv" {
        LayerKind::Conv
    } else {
        LayerKind::Dense
    };
    Ok((Treatment::Linear(Box::new(layer)), kind, absorbed))
}

/// Build the linear layer for Conv/Gemm/MatMul at node `i`, folding a following bias Add
/// (MatMul) and BatchNormalization into it where they are the sole consumer.
fn linear_layer(facts: &GraphFacts<'_>, i: usize) -> Result<(LinearLayer, Vec<usize>), String> {
    let node = &facts.graph.node[i];
    let nodes = &facts.graph.node;
    let weight_name = node.input.get(1).ok_or("missing weight input")?;
    let weight = facts
        .constant(weight_name)
        .ok_or_else(|| format!("weight '{weight_name}' is not a constant"))?;
    let weight_values = weight
        .as_f32()
        .ok_or("weight is not floating point")?
        .to_vec();
    let bias_input = node.input.get(2).filter(|b| !b.is_empty());
    let bias_values = |name: &str| -> Result<Vec<f32>, String> {
        facts
            .constant(name)
            .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
            .ok_or_else(|| format!("bias '{name}' is not a float constant"))
    };
    let mut absorbed = Vec::new();
    let mut output = node.output[0].clone();
    let mut layer = match node.op_type.as_str() {
        "Conv" => {
            check_auto_pad(node)?;
            if weight.dims.len() < 3 {
                return Err("Conv weight must have rank >= 3".into());
            }
            let bias = bias_input.map(|b| bias_values(b)).transpose()?;
            let strides = node.attr_ints("strides").unwrap_or(&[]);
            LinearLayer {
                op: LinearOp::Conv,
                input: node.input[0].clone(),
                output: output.clone(),
                spatial_rank: weight.dims.len() - 2,
                strided: strides.iter().any(|s| *s != 1),
                weight: Tensor::f32(weight.dims.clone(), weight_values),
                bias,
                conv_attrs: node
                    .attribute
                    .iter()
                    .filter(|a| a.name != "auto_pad")
                    .cloned()
                    .collect(),
                merged: vec![],
            }
        }
        "Gemm" => {
            if node.attr_int("transA").unwrap_or(0) != 0 {
                return Err("Gemm with transA=1".into());
            }
            if weight.dims.len() != 2 {
                return Err("Gemm weight must be 2-D".into());
            }
            let alpha = node.attr_float("alpha").unwrap_or(1.0);
            let beta = node.attr_float("beta").unwrap_or(1.0);
            let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
            let (w_oi, out_features) = to_out_in(&weight_values, &weight.dims, trans_b, alpha);
            let bias = bias_input
                .map(|b| bias_values(b).and_then(|v| broadcast_bias(&v, out_features)))
                .transpose()?
                .map(|v| v.into_iter().map(|x| x * beta).collect());
            dense(node, w_oi, bias)
        }
        "MatMul" => {
            if weight.dims.len() != 2 {
                return Err("MatMul with a constant right-hand side of rank != 2".into());
            }
            let (w_oi, out_features) = to_out_in(&weight_values, &weight.dims, false, 1.0);
            let mut layer = dense(node, w_oi, None);
            if let Some(j) = facts.sole_consumer(&output) {
                let add = &nodes[j];
                if add.op_type == "Add" {
                    if let Some(other) = add.input.iter().find(|n| **n != output) {
                        if let Some(b) = facts
                            .constant(other)
                            .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
                        {
                            if let Ok(b) = broadcast_bias(&b, out_features) {
                                layer.bias = Some(b);
                                output = add.output[0].clone();
                                absorbed.push(j);
                            }
                        }
                    }
                }
            }
            layer
        }
        other => return Err(format!("{other}: not a linear op")),
    };
    // Fold a BatchNormalization that consumes only this layer's output (zennit's
    // SequentialMergeBatchNorm): W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε).
    if let Some(j) = facts.sole_consumer(&output) {
        let bn = &nodes[j];
        if bn.op_type == "BatchNormalization" && bn.input.len() >= 5 {
            let params: Option<Vec<Vec<f32>>> = bn.input[1..5]
                .iter()
                .map(|n| {
                    facts
                        .constant(n)
                        .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
                })
                .collect();
            let out_channels = layer.weight.dims[0] as usize;
            if let Some(p) = params.filter(|p| p.iter().all(|v| v.len() == out_channels)) {
                let eps = bn.attr_float("epsilon").unwrap_or(1e-5);
                let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
                let scale: Vec<f32> = (0..out_channels)
                    .map(|c| gamma[c] / (var[c] + eps).sqrt())
                    .collect();
                let per_channel = layer.weight.numel() / out_channels;
                if let spray_onnx::TensorData::F32(w) = &mut layer.weight.data {
                    for (c, chunk) in w.chunks_mut(per_channel).enumerate() {
                        chunk.iter_mut().for_each(|x| *x *= scale[c]);
                    }
                }
                let bias = layer.bias.take().unwrap_or_else(|| vec![0.0; out_channels]);
                layer.bias = Some(
                    (0..out_channels)
                        .map(|c| (bias[c] - mean[c]) * scale[c] + beta[c])
                        .collect(),
                );
                output = bn.output[0].clone();
                absorbed.push(j);
            }
        }
    }
    layer.output = output;
    layer.merged = absorbed.iter().map(|&j| node_key(&nodes[j])).collect();
    Ok((layer, absorbed))
}

fn dense(node: &NodeProto, w_oi: Tensor, bias: Option<Vec<f32>>) -> LinearLayer {
    LinearLayer {
        op: if node.op_type == "Gemm" {
            LinearOp::Gemm
        } else {
            LinearOp::MatMul
        },
        input: node.input[0].clone(),
        output: node.output[0].clone(),
        weight: w_oi,
        bias,
        conv_attrs: vec![],
        spatial_rank: 0,
        strided: false,
        merged: vec![],
    }
}

/// Weight as [out, in], scaled by `alpha`.
fn to_out_in(values: &[f32], dims: &[i64], transposed: bool, alpha: f32) -> (Tensor, usize) {
    let (rows, cols) = (dims[0] as usize, dims[1] as usize);
    if transposed {
        let w = values.iter().map(|x| x * alpha).collect();
        (Tensor::f32(vec![rows as i64, cols as i64], w), rows)
    } else {
        let mut w = vec![0.0; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                w[c * rows + r] = values[r * cols + c] * alpha;
            }
        }
        (Tensor::f32(vec![cols as i64, rows as i64], w), cols)
    }
}

fn broadcast_bias(values: &[f32], out_features: usize) -> Result<Vec<f32>, String> {
    match values.len() {
        1 => Ok(vec![values[0]; out_features]),
        n if n == out_features => Ok(values.to_vec()),
        n => Err(format!("bias of {n} values for {out_features} outputs")),
    }
}

/// The linear layer's backward step: its output relevance to its input.
pub(crate) fn backward(
    cx: &mut Backward<'_, '_>,
    layer: &LinearLayer,
    rule: &Rule,
    r: &str,
) -> Vec<(String, String)> {
    let nonnegative = cx.facts.nonnegative.contains(layer.input.as_str());
    vec![(
        layer.input.clone(),
        linear_backward(&mut cx.b, nonnegative, layer, rule, r),
    )]
}

/// The linear-rule scheme of [`crate::rules`] on one Conv/Gemm/MatMul layer.
///
/// Terms are regrouped for speed without changing the result: a group whose terms share one
/// coefficient scales its (output-sized) quotient once, and the transposed maps of all terms
/// with the same input modifier are summed before the single (input-sized) multiplication.
/// `nonnegative`: the layer's input is known to be ≥ 0.
fn linear_backward(
    b: &mut Builder,
    nonnegative: bool,
    layer: &LinearLayer,
    rule: &Rule,
    r: &str,
) -> String {
    let groups = rule.linear_terms().expect("linear rule checked in plan");
    let x = layer.input.as_str();
    let mut weights: HashMap<String, (String, Option<String>)> = HashMap::new();
    // Per input modifier (in first-seen order): the transposed maps to be summed.
    let mut by_input: Vec<(InputMod, Vec<String>)> = Vec::new();
    for group in &groups {
        // Drop terms on the negative part of an input known to be non-negative: they are exactly zero.
        let terms: Vec<_> = group
            .terms
            .iter()
            .filter(|t| !(nonnegative && t.input == InputMod::Negative))
            .collect();
        if terms.is_empty() {
            continue;
        }
        let mut s = if group.is_gradient() {
            r.to_owned()
        } else {
            let reuse_output = terms.len() == 1
                && terms[0].input == InputMod::Identity
                && terms[0].weight == ParamMod::Identity
                && terms[0].bias == ParamMod::Identity;
            let z = if reuse_output {
                layer.output.clone()
            } else {
                let mut z: Option<String> = None;
                for t in &terms {
                    let input = modified_input(b, x, t.input, rule, layer, nonnegative);
                    let (w, bias) = modified_params(b, layer, t.weight, t.bias, &mut weights);
                    let out = linear_forward(b, layer, &input, &w, bias.as_deref());
                    z = Some(match (z, t.z_sign < 0.0) {
                        (None, false) => out,
                        (None, true) => b.op("Neg", &[&out], vec![]),
                        (Some(acc), false) => b.op("Add", &[&acc, &out], vec![]),
                        (Some(acc), true) => b.op("Sub", &[&acc, &out], vec![]),
                    });
                }
                z.expect("non-empty group")
            };
            let mut s = b.divide_stabilized_signed(r, &z, group.stabilizer, group.known_sign());
            if group.mask != OutputMask::All {
                let zero = b.scalar(0.0);
                let cmp = if group.mask == OutputMask::PositiveOutput {
                    "Greater"
                } else {
                    "Less"
                };
                let keep = b.op(cmp, &[&layer.output, &zero], vec![]);
                s = b.op("Where", &[&keep, &s, &zero], vec![]);
            }
            s
        };
        let shared = terms[0].coefficient;
        let uniform = terms.iter().all(|t| t.coefficient == shared);
        if uniform && shared != 1.0 {
            let k = b.scalar(shared);
            s = b.op("Mul", &[&s, &k], vec![]);
        }
        for t in &terms {
            let mut g = match flipped_conv_attrs(layer) {
                // Stride-1 convolution: its transpose is a convolution with the kernel flipped and
                // its channel axes swapped, which runs on ONNX Runtime's faster Conv kernels.
                Some(attrs) => {
                    let key = format!("flipped|{:?}", t.weight);
                    let w = match weights.get(&key) {
                        Some((w, _)) => w.clone(),
                        None => {
                            let values =
                                t.weight.apply(layer.weight.as_f32().expect("float weight"));
                            let w = b.constant(
                                "w_flipped",
                                flip_conv_weight(&layer.weight.dims, &values),
                            );
                            weights.insert(key, (w.clone(), None));
                            w
                        }
                    };
                    b.op("Conv", &[&s, &w], attrs)
                }
                None => {
                    let (w, _) = modified_params(b, layer, t.weight, ParamMod::Zero, &mut weights);
                    linear_transpose(b, layer, &s, &w)
                }
            };
            if !uniform && t.coefficient != 1.0 {
                let k = b.scalar(t.coefficient);
                g = b.op("Mul", &[&g, &k], vec![]);
            }
            match by_input.iter_mut().find(|(m, _)| *m == t.input) {
                Some((_, gs)) => gs.push(g),
                None => by_input.push((t.input, vec![g])),
            }
        }
    }
    let mut contributions = Vec::new();
    for (input_mod, gs) in by_input {
        let g = b.sum(&gs).expect("non-empty");
        contributions.push(match input_mod {
            InputMod::Ones => g,
            InputMod::Low | InputMod::High => {
                let bound = bound_constant(b, rule, input_mod, layer);
                b.op("Mul", &[&bound, &g], vec![])
            }
            other => {
                let input = modified_input(b, x, other, rule, layer, nonnegative);
                b.op("Mul", &[&input, &g], vec![])
            }
        });
    }
    b.sum(&contributions).unwrap_or_else(|| {
        let zero = b.scalar(0.0);
        b.op("Mul", &[x, &zero], vec![])
    })
}

fn modified_input(
    b: &mut Builder,
    x: &str,
    m: InputMod,
    rule: &Rule,
    layer: &LinearLayer,
    nonnegative: bool,
) -> String {
    match m {
        InputMod::Identity => x.to_owned(),
        InputMod::Positive if nonnegative => x.to_owned(),
        InputMod::Positive => b.positive_part(x),
        InputMod::Negative => b.negative_part(x),
        InputMod::Ones => b.ones_like_sample(x),
        InputMod::Low | InputMod::High => {
            let bound = bound_constant(b, rule, m, layer);
            let shape = b.single_sample_shape(x);
            b.op("Expand", &[&bound, &shape], vec![])
        }
    }
}

/// The z-box bound as a constant broadcastable against the layer input: a scalar, or one value
/// per channel shaped [1, C, 1, …] (conv) / [C] (dense).
fn bound_constant(b: &mut Builder, rule: &Rule, m: InputMod, layer: &LinearLayer) -> String {
    let Rule::ZBox { low, high, .. } = rule else {
        unreachable!("bounds only for z-box")
    };
    let values = if m == InputMod::Low { low } else { high };
    let dims: Vec<i64> = if values.len() == 1 {
        vec![]
    } else if layer.op == LinearOp::Conv {
        [1, values.len() as i64]
            .into_iter()
            .chain(std::iter::repeat_n(1, layer.spatial_rank))
            .collect()
    } else {
        vec![values.len() as i64]
    };
    b.constant("zbox_bound", Tensor::f32(dims, values.clone()))
}

/// Initializers for modified weight (and bias), cached per modification.
fn modified_params(
    b: &mut Builder,
    layer: &LinearLayer,
    weight_mod: ParamMod,
    bias_mod: ParamMod,
    cache: &mut HashMap<String, (String, Option<String>)>,
) -> (String, Option<String>) {
    let key = format!("{weight_mod:?}|{bias_mod:?}");
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let weight_values = layer.weight.as_f32().expect("float weight");
    let w = b.constant(
        "w",
        Tensor::f32(layer.weight.dims.clone(), weight_mod.apply(weight_values)),
    );
    let bias = match (&layer.bias, bias_mod) {
        (_, ParamMod::Zero) | (None, _) => None,
        (Some(values), m) => {
            Some(b.constant("b", Tensor::f32(vec![values.len() as i64], m.apply(values))))
        }
    };
    cache.insert(key, (w.clone(), bias.clone()));
    (w, bias)
}

/// L(x; W, b): the layer run forward with the given parameters.
fn linear_forward(
    b: &mut Builder,
    layer: &LinearLayer,
    x: &str,
    w: &str,
    bias: Option<&str>,
) -> String {
    match layer.op {
        LinearOp::Conv => {
            let mut inputs = vec![x, w];
            if let Some(bias) = bias {
                inputs.push(bias);
            }
            b.op("Conv", &inputs, layer.conv_attrs.clone())
        }
        LinearOp::Gemm => {
            let mut inputs = vec![x, w];
            if let Some(bias) = bias {
                inputs.push(bias);
            }
            b.op("Gemm", &inputs, vec![attr::int("transB", 1)])
        }
        LinearOp::MatMul => {
            let perm = b.op("Transpose", &[w], vec![attr::ints("perm", &[1, 0])]);
            let y = b.op("MatMul", &[x, &perm], vec![]);
            match bias {
                Some(bias) => b.op("Add", &[&y, bias], vec![]),
                None => y,
            }
        }
    }
}

/// Lᵀ(s): the transposed linear map (the gradient of L with respect to its input, applied to s).
fn linear_transpose(b: &mut Builder, layer: &LinearLayer, s: &str, w: &str) -> String {
    match layer.op {
        LinearOp::Conv => {
            let attrs: Vec<_> = layer
                .conv_attrs
                .iter()
                .filter(|a| {
                    matches!(
                        a.name.as_str(),
                        "strides" | "pads" | "dilations" | "group" | "kernel_shape"
                    )
                })
                .cloned()
                .collect();
            if !layer.strided {
                // Stride 1: the transposed convolution reproduces the input extent exactly.
                return b.op("ConvTranspose", &[s, w], attrs);
            }
            let attrs = attrs.into_iter().map(crop_start_only).collect();
            let y = b.op("ConvTranspose", &[s, w], attrs);
            b.fit_spatial(&y, &layer.input, layer.spatial_rank)
        }
        LinearOp::Gemm | LinearOp::MatMul => b.op("MatMul", &[s, w], vec![]),
    }
}

/// Attributes of the convolution that computes the transpose of a stride-1, ungrouped Conv layer:
/// padding d·(k−1) − p on each side. `None` where that does not apply (strides, groups, or
/// padding wider than the dilated kernel).
fn flipped_conv_attrs(layer: &LinearLayer) -> Option<Vec<spray_onnx::AttributeProto>> {
    if layer.op != LinearOp::Conv || layer.strided {
        return None;
    }
    let get = |name: &str| layer.conv_attrs.iter().find(|a| a.name == name);
    if get("group").is_some_and(|a| a.i != 1) {
        return None;
    }
    let nd = layer.spatial_rank;
    let kernel: Vec<i64> = layer.weight.dims[2..].to_vec();
    let dilations: Vec<i64> = get("dilations")
        .map(|a| a.ints.clone())
        .unwrap_or_else(|| vec![1; nd]);
    let pads: Vec<i64> = get("pads")
        .map(|a| a.ints.clone())
        .unwrap_or_else(|| vec![0; 2 * nd]);
    if dilations.len() != nd || pads.len() != 2 * nd {
        return None;
    }
    let flipped: Vec<i64> = (0..2 * nd)
        .map(|i| dilations[i % nd] * (kernel[i % nd] - 1) - pads[i])
        .collect();
    if flipped.iter().any(|p| *p < 0) {
        return None;
    }
    Some(vec![
        attr::ints("kernel_shape", &kernel),
        attr::ints("dilations", &dilations),
        attr::ints("pads", &flipped),
    ])
}

/// [M, C, k…] → [C, M, k…] with every spatial axis reversed (reversing all spatial axes is
/// reversing the row-major order of the flattened kernel).
fn flip_conv_weight(dims: &[i64], values: &[f32]) -> Tensor {
    let (m, c) = (dims[0] as usize, dims[1] as usize);
    let k: usize = dims[2..].iter().product::<i64>() as usize;
    let mut out = vec![0.0; values.len()];
    for mi in 0..m {
        for ci in 0..c {
            for t in 0..k {
                out[(ci * m + mi) * k + (k - 1 - t)] = values[(mi * c + ci) * k + t];
            }
        }
    }
    let mut new_dims = dims.to_vec();
    new_dims.swap(0, 1);
    Tensor::f32(new_dims, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{classify_one, Input};

    #[test]
    fn dense_weights_become_out_by_in_scaled_by_alpha() {
        // Gemm without transB: W is [in=2, out=3].
        let (w, out) = to_out_in(&[1., 2., 3., 4., 5., 6.], &[2, 3], false, 2.0);
        assert_eq!(out, 3);
        assert_eq!(w.dims, vec![3, 2]);
        assert_eq!(w.as_f32().unwrap(), &[2., 8., 4., 10., 6., 12.]);
        let (w, out) = to_out_in(&[1., 2., 3., 4., 5., 6.], &[2, 3], true, 1.0);
        assert_eq!((out, w.dims.clone()), (2, vec![2, 3]));
    }

    #[test]
    fn the_flipped_kernel_swaps_channels_and_reverses_space() {
        // M = 1, C = 2, 1×2 kernels: [[a, b], [c, d]] → C×M with each row reversed.
        let t = flip_conv_weight(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        assert_eq!(t.dims, vec![2, 1, 1, 2]);
        assert_eq!(t.as_f32().unwrap(), &[2., 1., 4., 3.]);
    }

    #[test]
    fn a_bias_is_one_value_or_one_per_output() {
        assert_eq!(broadcast_bias(&[0.5], 3), Ok(vec![0.5; 3]));
        assert_eq!(broadcast_bias(&[1., 2.], 2), Ok(vec![1., 2.]));
        assert!(broadcast_bias(&[1., 2.], 3)
            .unwrap_err()
            .contains("2 values for 3"));
    }

    #[test]
    fn layers_the_rules_cannot_express_are_refused_with_the_reason() {
        let gemm = classify_one(
            "Gemm",
            &[1, 4],
            vec![Input::X, Input::F32(vec![4, 3], vec![1.0; 12])],
            vec![attr::int("transA", 1)],
        );
        assert_eq!(gemm.unwrap_err(), "Gemm with transA=1");
        let attention = classify_one("MatMul", &[1, 4], vec![Input::X, Input::X], vec![]);
        assert!(attention
            .unwrap_err()
            .contains("two activations (attention)"));
        let same_pad = classify_one(
            "Conv",
            &[1, 4, 4, 4],
            vec![Input::X, Input::F32(vec![2, 4, 3, 3], vec![1.0; 72])],
            vec![attr::string("auto_pad", "SAME_UPPER")],
        );
        assert!(same_pad.unwrap_err().contains("auto_pad=SAME_UPPER"));
    }
}

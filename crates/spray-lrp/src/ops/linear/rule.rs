//! The LRP rule on one linear layer ([`crate::rules`]' groups of terms): each term is the
//! layer run forward with modified input and parameters, the quotient of the relevance and a
//! group's summed terms is mapped back through the transposed layer (a flipped-kernel Conv,
//! ConvTranspose or MatMul), and the maps are multiplied by the modified inputs.

use std::collections::HashMap;

use spray_onnx::{attr, Tensor};

use super::{LinearLayer, LinearOp};
use crate::builder::Builder;
use crate::ops::{crop_start_only, Backward};
use crate::rules::{InputMod, OutputMask, ParamMod, Rule, Term, TermGroup};

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

/// One layer under one rule: what every term of every group needs.
struct LayerRule<'l> {
    layer: &'l LinearLayer,
    rule: &'l Rule,
    /// The layer's input is known to be ≥ 0.
    nonnegative: bool,
    /// Initializers of the modified parameters, cached per modification.
    weights: HashMap<String, (String, Option<String>)>,
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
    let mut cx = LayerRule {
        layer,
        rule,
        nonnegative,
        weights: HashMap::new(),
    };
    // Per input modifier (in first-seen order): the transposed maps to be summed.
    let mut by_input: Vec<(InputMod, Vec<String>)> = Vec::new();
    for group in &groups {
        // Drop terms on the negative part of an input known to be non-negative: they are exactly zero.
        let terms: Vec<&Term> = group
            .terms
            .iter()
            .filter(|t| !(nonnegative && t.input == InputMod::Negative))
            .collect();
        if terms.is_empty() {
            continue;
        }
        let s = if group.is_gradient() {
            r.to_owned()
        } else {
            group_quotient(b, &mut cx, group, &terms, r)
        };
        transpose_group(b, &mut cx, &terms, s, &mut by_input);
    }
    multiply_by_inputs(b, &cx, by_input)
}

/// s = R / z for one group: z sums the group's terms (each the layer run forward with modified
/// input and parameters), the division is stabilised, and the group's output mask applied.
fn group_quotient(
    b: &mut Builder,
    cx: &mut LayerRule<'_>,
    group: &TermGroup,
    terms: &[&Term],
    r: &str,
) -> String {
    let layer = cx.layer;
    let reuse_output = terms.len() == 1
        && terms[0].input == InputMod::Identity
        && terms[0].weight == ParamMod::Identity
        && terms[0].bias == ParamMod::Identity;
    let z = if reuse_output {
        layer.output.clone()
    } else {
        let mut z: Option<String> = None;
        for t in terms {
            let input = modified_input(b, &layer.input, t.input, cx.rule, layer, cx.nonnegative);
            let (w, bias) = modified_params(b, layer, t.weight, t.bias, &mut cx.weights);
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
}

/// Map a group's quotient `s` back through the transposed layer once per term (weighted by the
/// term's coefficient, once for the whole group when all share it), filing each map under its
/// term's input modifier.
fn transpose_group(
    b: &mut Builder,
    cx: &mut LayerRule<'_>,
    terms: &[&Term],
    mut s: String,
    by_input: &mut Vec<(InputMod, Vec<String>)>,
) {
    let shared = terms[0].coefficient;
    let uniform = terms.iter().all(|t| t.coefficient == shared);
    if uniform && shared != 1.0 {
        let k = b.scalar(shared);
        s = b.op("Mul", &[&s, &k], vec![]);
    }
    for t in terms {
        let mut g = transposed_term(b, cx, t, &s);
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

/// Lᵀ(s) with the term's modified weight.
fn transposed_term(b: &mut Builder, cx: &mut LayerRule<'_>, t: &Term, s: &str) -> String {
    let layer = cx.layer;
    match flipped_conv_attrs(layer) {
        // Stride-1 convolution: its transpose is a convolution with the kernel flipped and
        // its channel axes swapped, which runs on ONNX Runtime's faster Conv kernels.
        Some(attrs) => {
            let key = format!("flipped|{:?}", t.weight);
            let w = match cx.weights.get(&key) {
                Some((w, _)) => w.clone(),
                None => {
                    let values = t.weight.apply(layer.weight.as_f32().expect("float weight"));
                    let w = b.constant("w_flipped", flip_conv_weight(&layer.weight.dims, &values));
                    cx.weights.insert(key, (w.clone(), None));
                    w
                }
            };
            b.op("Conv", &[s, &w], attrs)
        }
        None => {
            let (w, _) = modified_params(b, layer, t.weight, ParamMod::Zero, &mut cx.weights);
            linear_transpose(b, layer, s, &w)
        }
    }
}

/// The input's relevance: per input modifier, the summed maps times the modified input (the
/// z-box bound itself for the bound terms), all summed.
fn multiply_by_inputs(
    b: &mut Builder,
    cx: &LayerRule<'_>,
    by_input: Vec<(InputMod, Vec<String>)>,
) -> String {
    let (layer, x) = (cx.layer, cx.layer.input.as_str());
    let mut contributions = Vec::new();
    for (input_mod, gs) in by_input {
        let g = b.sum(&gs).expect("non-empty");
        contributions.push(match input_mod {
            InputMod::Ones => g,
            InputMod::Low | InputMod::High => {
                let bound = bound_constant(b, cx.rule, input_mod, layer);
                b.op("Mul", &[&bound, &g], vec![])
            }
            other => {
                let input = modified_input(b, x, other, cx.rule, layer, cx.nonnegative);
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
    let w = match (&layer.original, weight_mod) {
        // The graph's own weight, unmodified: read it (transposed to [out, in] at run time
        // where it is stored as [in, out]) instead of writing a copy into the graph.
        (Some((name, false)), ParamMod::Identity) => name.clone(),
        (Some((name, true)), ParamMod::Identity) => {
            b.op("Transpose", &[name], vec![attr::ints("perm", &[1, 0])])
        }
        _ => {
            let weight_values = layer.weight.as_f32().expect("float weight");
            b.constant(
                "w",
                Tensor::f32(layer.weight.dims.clone(), weight_mod.apply(weight_values)),
            )
        }
    };
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

    #[test]
    fn the_flipped_kernel_swaps_channels_and_reverses_space() {
        // M = 1, C = 2, 1×2 kernels: [[a, b], [c, d]] → C×M with each row reversed.
        let t = flip_conv_weight(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        assert_eq!(t.dims, vec![2, 1, 1, 2]);
        assert_eq!(t.as_f32().unwrap(), &[2., 1., 4., 3.]);
    }
}

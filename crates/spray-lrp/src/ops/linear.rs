//! Linear layers — Conv, Gemm, MatMul with constant weights — and the LRP rules proper
//! ([`crate::rules`]): a BatchNormalization (and a MatMul's bias Add) that only this layer
//! feeds is folded into it, and the backward step runs through ONNX's own Conv/ConvTranspose/
//! Gemm/MatMul with the weights modified at compile time.

mod rule;

use spray_onnx::{NodeExt, NodeProto, Tensor};

use super::{check_auto_pad, node_key, Classified, NodeView, Treatment};
use crate::composite::LayerKind;
use crate::graph::GraphFacts;

pub(crate) use rule::backward;

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
    /// The graph's own weight tensor when `weight` holds exactly its values (no merged
    /// BatchNorm, no Gemm alpha), and whether it is stored as [in, out]: the rules' unmodified
    /// terms read it rather than a copy (a copy of ViT-L's dense weights took its compiled
    /// graph past ONNX Runtime's 2 GB protobuf limit).
    original: Option<(String, bool)>,
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
    let weight_name = node.input.get(1).ok_or("missing weight input")?;
    let weight = facts
        .constant(weight_name)
        .ok_or_else(|| format!("weight '{weight_name}' is not a constant"))?;
    let weight_values = weight
        .as_f32()
        .ok_or("weight is not floating point")?
        .to_vec();
    let mut absorbed = Vec::new();
    let mut layer = match node.op_type.as_str() {
        "Conv" => {
            let mut layer = conv_layer(facts, node, weight.dims, weight_values)?;
            layer.original = Some((weight_name.clone(), false));
            layer
        }
        "Gemm" => {
            let mut layer = gemm_layer(facts, node, &weight.dims, &weight_values)?;
            if node.attr_float("alpha").unwrap_or(1.0) == 1.0 {
                let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
                layer.original = Some((weight_name.clone(), !trans_b));
            }
            layer
        }
        "MatMul" => {
            if weight.dims.len() != 2 {
                return Err("MatMul with a constant right-hand side of rank != 2".into());
            }
            let (w_oi, out_features) = to_out_in(&weight_values, &weight.dims, false, 1.0);
            let mut layer = dense(node, w_oi, None);
            layer.original = Some((weight_name.clone(), true));
            absorbed.extend(merge_bias_add(facts, &mut layer, out_features));
            layer
        }
        other => return Err(format!("{other}: not a linear op")),
    };
    if let Some(bn) = merge_batch_norm(facts, &mut layer) {
        // The weight is scaled now: no longer the graph's own.
        layer.original = None;
        absorbed.push(bn);
    }
    layer.merged = absorbed
        .iter()
        .map(|&j| node_key(&facts.graph.node[j]))
        .collect();
    Ok((layer, absorbed))
}

/// The values of a float constant.
fn float_constant(facts: &GraphFacts<'_>, name: &str) -> Option<Vec<f32>> {
    facts
        .constant(name)
        .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
}

/// The node's optional bias input (third), as float values.
fn bias_input(facts: &GraphFacts<'_>, node: &NodeProto) -> Result<Option<Vec<f32>>, String> {
    node.input
        .get(2)
        .filter(|b| !b.is_empty())
        .map(|name| {
            float_constant(facts, name)
                .ok_or_else(|| format!("bias '{name}' is not a float constant"))
        })
        .transpose()
}

fn conv_layer(
    facts: &GraphFacts<'_>,
    node: &NodeProto,
    weight_dims: Vec<i64>,
    weight_values: Vec<f32>,
) -> Result<LinearLayer, String> {
    check_auto_pad(node)?;
    if weight_dims.len() < 3 {
        return Err("Conv weight must have rank >= 3".into());
    }
    let bias = bias_input(facts, node)?;
    let strides = node.attr_ints("strides").unwrap_or(&[]);
    Ok(LinearLayer {
        op: LinearOp::Conv,
        input: node.input[0].clone(),
        output: node.output[0].clone(),
        spatial_rank: weight_dims.len() - 2,
        strided: strides.iter().any(|s| *s != 1),
        weight: Tensor::f32(weight_dims, weight_values),
        original: None,
        bias,
        conv_attrs: node
            .attribute
            .iter()
            .filter(|a| a.name != "auto_pad")
            .cloned()
            .collect(),
        merged: vec![],
    })
}

/// Gemm with its `alpha`, `beta` and `transB` folded into an [out, in] weight and the bias.
fn gemm_layer(
    facts: &GraphFacts<'_>,
    node: &NodeProto,
    weight_dims: &[i64],
    weight_values: &[f32],
) -> Result<LinearLayer, String> {
    if node.attr_int("transA").unwrap_or(0) != 0 {
        return Err("Gemm with transA=1".into());
    }
    if weight_dims.len() != 2 {
        return Err("Gemm weight must be 2-D".into());
    }
    let alpha = node.attr_float("alpha").unwrap_or(1.0);
    let beta = node.attr_float("beta").unwrap_or(1.0);
    let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
    let (w_oi, out_features) = to_out_in(weight_values, weight_dims, trans_b, alpha);
    let bias = bias_input(facts, node)?
        .map(|v| broadcast_bias(&v, out_features))
        .transpose()?
        .map(|v| v.into_iter().map(|x| x * beta).collect());
    Ok(dense(node, w_oi, bias))
}

/// Fold a constant bias Add that is the sole consumer of a MatMul layer's output into the
/// layer. Returns the Add's node index when it was merged.
fn merge_bias_add(
    facts: &GraphFacts<'_>,
    layer: &mut LinearLayer,
    out_features: usize,
) -> Option<usize> {
    let j = facts.sole_consumer(&layer.output)?;
    let add = &facts.graph.node[j];
    if add.op_type != "Add" {
        return None;
    }
    let other = add.input.iter().find(|n| **n != layer.output)?;
    let bias = broadcast_bias(&float_constant(facts, other)?, out_features).ok()?;
    layer.bias = Some(bias);
    layer.output = add.output[0].clone();
    Some(j)
}

/// Fold a BatchNormalization that consumes only this layer's output (zennit's
/// SequentialMergeBatchNorm): W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε). Returns the
/// BatchNormalization's node index when it was merged.
fn merge_batch_norm(facts: &GraphFacts<'_>, layer: &mut LinearLayer) -> Option<usize> {
    let j = facts.sole_consumer(&layer.output)?;
    let bn = &facts.graph.node[j];
    if bn.op_type != "BatchNormalization" || bn.input.len() < 5 {
        return None;
    }
    let params: Vec<Vec<f32>> = bn.input[1..5]
        .iter()
        .map(|n| float_constant(facts, n))
        .collect::<Option<_>>()?;
    let out_channels = layer.weight.dims[0] as usize;
    if !params.iter().all(|v| v.len() == out_channels) {
        return None;
    }
    let eps = bn.attr_float("epsilon").unwrap_or(1e-5);
    let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
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
    layer.output = bn.output[0].clone();
    Some(j)
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
        original: None,
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

#[cfg(test)]
mod tests {
    use spray_onnx::attr;

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
        // A MatMul of two activations is attention's (ops/attention.rs); a Gemm of two is not.
        let product = classify_one("Gemm", &[1, 4], vec![Input::X, Input::X], vec![]);
        assert!(product.unwrap_err().contains("not for Gemm"));
        let same_pad = classify_one(
            "Conv",
            &[1, 4, 4, 4],
            vec![Input::X, Input::F32(vec![2, 4, 3, 3], vec![1.0; 72])],
            vec![attr::string("auto_pad", "SAME_UPPER")],
        );
        assert!(same_pad.unwrap_err().contains("auto_pad=SAME_UPPER"));
    }
}

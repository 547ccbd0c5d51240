//! Activations, normalisations, casts and arithmetic: relevance passes to the one activation
//! input unchanged (the thesis' treatment of pointwise non-linearities), a sum of activations
//! splits it in proportion to the summands, and a gate `x · g(x)` sends all of it to `x`.
//! LayerNormalization passes relevance too, unless the composite asks for LXT's treatment: the
//! standard deviation held constant, the rest a linear map per sample, redistributed as one.

pub(crate) mod layer_norm;

use spray_onnx::{data_type, NodeExt, NodeProto};

use super::{proportional, table, times_input, Backward, Classified, NodeView, Treatment};
use crate::composite::LayerKind;
use crate::graph::GraphFacts;
use crate::rules::Rule;

#[derive(Debug, Clone)]
pub(crate) enum ElementwiseStep {
    /// Relevance passes to the data input unchanged (shapes equal).
    PassThrough { input: String },
    /// A sum of activations: relevance split in proportion to each summand (the layer's rule).
    Sum,
    /// `signal · gate`: everything goes to the signal.
    Gate { signal: String },
    /// `y = γ ⊙ (x − mean(x)) / σ + β` over the axes from `axis` on, σ held constant: with
    /// `S = R / stab(y)`, `R_x = x ⊙ (T − mean(T))` where `T = γ ⊙ S / σ` (the transposed
    /// centring map). β keeps its share, as a bias does under ε.
    LayerNorm {
        input: String,
        scale: String,
        /// `y`: the node's output, or the last node of a decomposed LayerNorm.
        output: String,
        axis: i64,
        epsilon: f32,
    },
}

pub(crate) fn classify(v: &NodeView<'_, '_>) -> Result<Classified, String> {
    let op = v.op();
    let pass = |kind: LayerKind| -> Result<Classified, String> {
        Ok((
            Treatment::Elementwise(ElementwiseStep::PassThrough {
                input: v.first_data()?,
            }),
            kind,
            vec![],
        ))
    };
    match op {
        "BatchNormalization" => {
            v.only_first_input_is_data()?;
            pass(LayerKind::BatchNorm)
        }
        "LayerNormalization" => {
            v.only_first_input_is_data()?;
            if v.node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err("LayerNormalization whose mean or 1/σ outputs are used".into());
            }
            Ok((
                Treatment::Elementwise(ElementwiseStep::LayerNorm {
                    input: v.first_data()?,
                    scale: v
                        .node
                        .input
                        .get(1)
                        .cloned()
                        .ok_or("LayerNormalization without a scale")?,
                    output: v.node.output[0].clone(),
                    axis: v.node.attr_int("axis").unwrap_or(-1),
                    epsilon: v.node.attr_float("epsilon").unwrap_or(1e-5),
                }),
                LayerKind::LayerNorm,
                vec![],
            ))
        }
        "LRN" => {
            v.only_first_input_is_data()?;
            pass(LayerKind::Normalization)
        }
        "Identity" => pass(LayerKind::Structural),
        "Cast" => {
            let to = v.node.attr_int("to").unwrap_or(0) as i32;
            if to != data_type::FLOAT {
                return Err("Cast on the relevance path must produce float32".into());
            }
            pass(LayerKind::Structural)
        }
        "Add" | "Sum" if v.data.len() >= 2 => {
            if v.data.len() != v.node.input.len() {
                return Err(format!("{op} mixes activations and constants"));
            }
            Ok((
                Treatment::Elementwise(ElementwiseStep::Sum),
                LayerKind::Sum,
                vec![],
            ))
        }
        "Add" | "Sub" | "Mul" | "Div" if v.data.len() == 1 => pass(LayerKind::Elementwise),
        "Mul" if v.data.len() == 2 => {
            let (a, b) = (v.data[0], v.data[1]);
            let signal = if is_gate(v.facts, b, a) {
                a
            } else if is_gate(v.facts, a, b) {
                b
            } else {
                return Err("Mul of two activations is supported only when one is a gate: a Sigmoid/HardSigmoid output \
                            or an elementwise function of the other (SiLU, GELU, Mish)"
                    .into());
            };
            Ok((
                Treatment::Elementwise(ElementwiseStep::Gate {
                    signal: signal.to_owned(),
                }),
                LayerKind::Gate,
                vec![],
            ))
        }
        "Add" | "Sum" | "Sub" | "Mul" | "Div" => Err("no LRP treatment for this op".into()),
        // Every other op of the family is an activation.
        _ => {
            v.only_first_input_is_data()?;
            pass(LayerKind::Activation)
        }
    }
}

/// A LayerNorm written out in primitive ops, classified at its centring Sub: one step for the
/// chain, the Div, Mul and bias Add merged into it.
pub(crate) fn classify_decomposed_layer_norm(v: &NodeView<'_, '_>) -> Option<Classified> {
    let found = layer_norm::decomposed_at(v.facts.graph, v.index)?;
    Some((
        Treatment::Elementwise(ElementwiseStep::LayerNorm {
            input: found.input,
            scale: found.scale,
            output: found.output,
            axis: found.axis,
            epsilon: found.epsilon,
        }),
        LayerKind::LayerNorm,
        found.absorbed,
    ))
}

/// Whether `gate` gates `signal` in `signal * gate`: it is a Sigmoid/HardSigmoid output
/// (squeeze-and-excitation, SiLU) or an elementwise function of `signal` itself.
fn is_gate(facts: &GraphFacts<'_>, gate: &str, signal: &str) -> bool {
    let producer_op = |t: &str| facts.producer.get(t).map(|&p| &facts.graph.node[p]);
    if producer_op(gate).is_some_and(|n| matches!(n.op_type.as_str(), "Sigmoid" | "HardSigmoid")) {
        return true;
    }
    let mut current = gate.to_owned();
    for _ in 0..8 {
        let Some(node) = producer_op(&current) else {
            return false;
        };
        if !table::is_elementwise_unary(&node.op_type) {
            return false;
        }
        let data: Vec<&String> = node.input.iter().filter(|i| facts.is_data(i)).collect();
        let [only] = data.as_slice() else {
            return false;
        };
        if only.as_str() == signal {
            return true;
        }
        current = (*only).clone();
    }
    false
}

pub(crate) fn backward(
    cx: &mut Backward<'_, '_>,
    node: &NodeProto,
    step: &ElementwiseStep,
    rule: &Rule,
    r: String,
) -> Vec<(String, String)> {
    match step {
        ElementwiseStep::PassThrough { input } | ElementwiseStep::Gate { signal: input } => {
            vec![(input.clone(), r)]
        }
        ElementwiseStep::Sum => {
            let s = proportional(&mut cx.b, &r, &node.output[0], rule);
            node.input
                .iter()
                .filter(|inp| cx.facts.is_data(inp))
                .map(|inp| (inp.clone(), times_input(&mut cx.b, rule, inp, &s)))
                .collect()
        }
        // The identity rule (`LayerNormRule::Identity`).
        ElementwiseStep::LayerNorm { input, .. } if *rule == Rule::Pass => {
            vec![(input.clone(), r)]
        }
        ElementwiseStep::LayerNorm {
            input,
            scale,
            output,
            axis,
            epsilon,
        } => vec![(
            input.clone(),
            layer_norm::backward(&mut cx.b, rule, &r, output, (input, scale, *axis, *epsilon)),
        )],
    }
}

#[cfg(test)]
mod tests {
    use spray_onnx::attr;

    use super::*;
    use crate::ops::testing::{classify_one, Input};

    #[test]
    fn a_sum_of_activations_splits_and_a_constant_operand_passes() {
        let sum = classify_one("Add", &[1, 4], vec![Input::X, Input::X], vec![]).unwrap();
        assert!(matches!(
            sum.0,
            Treatment::Elementwise(ElementwiseStep::Sum)
        ));
        assert_eq!(sum.1, LayerKind::Sum);
        let shift = classify_one(
            "Sub",
            &[1, 4],
            vec![Input::X, Input::F32(vec![1], vec![1.0])],
            vec![],
        )
        .unwrap();
        assert_eq!(shift.1, LayerKind::Elementwise);
        let mixed = classify_one(
            "Sum",
            &[1, 4],
            vec![Input::X, Input::X, Input::F32(vec![1], vec![1.0])],
            vec![],
        );
        assert_eq!(mixed.unwrap_err(), "Sum mixes activations and constants");
    }

    #[test]
    fn a_quotient_of_activations_and_an_integer_cast_are_refused() {
        let err = classify_one("Div", &[1, 4], vec![Input::X, Input::X], vec![]).unwrap_err();
        assert_eq!(err, "no LRP treatment for this op");
        let cast = classify_one("Cast", &[1, 4], vec![Input::X], vec![attr::int("to", 7)]);
        assert!(cast.unwrap_err().contains("must produce float32"));
    }
}

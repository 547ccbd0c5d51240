//! Attention: a Softmax inside the network and the MatMul of two activations around it
//! (`softmax(Q·Kᵀ)·V`), with AttnLRP's rules (Achtibat et al., ICML 2024):
//!
//! - Softmax, `s = softmax(x)` along `axis`: the linearisation at `x`,
//!   `R_x = x ⊙ (R − s · Σ_axis R)` (AttnLRP eq. 10; what LXT computes as Gradient × Input).
//! - A product of two activations `Y = A·B`: the proportional split of the bilinear form, half
//!   to each operand (the uniform rule, eq. 7): with `S = R / stab(Y)`,
//!   `R_A = ½ A ⊙ (S·Bᵀ)` and `R_B = ½ B ⊙ (Aᵀ·S)`.
//!
//! Under CP-LRP ([`AttentionRule::CpLrp`]) the Softmax passes nothing and a product one of whose
//! operands is attention weights treats those weights as a constant matrix: the other operand
//! (the values) receives all of the relevance, `R_V = V ⊙ (Aᵀ·S)`.
//!
//! The batch dimensions of the two operands must agree (they do in every exporter's attention);
//! the products are written as `Einsum` with an ellipsis so the rank need not be known.

use spray_onnx::{attr, NodeExt, NodeProto};

use super::{proportional, table, times_input, Backward, Classified, NodeView, Treatment};
use crate::composite::{AttentionRule, LayerKind};
use crate::graph::GraphFacts;
use crate::rules::Rule;

#[derive(Debug, Clone)]
pub(crate) enum AttentionStep {
    Softmax {
        input: String,
        axis: i64,
        /// CP-LRP: the attention weights are constants, so nothing passes.
        blocked: bool,
    },
    Bilinear {
        operands: [String; 2],
        /// Which operand is a Softmax's output (the attention weights), seen through reshapes,
        /// transposes and scalings.
        weights: Option<usize>,
        receivers: Receivers,
    },
}

/// Which operands of a product of activations receive relevance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receivers {
    /// Half to each (AttnLRP's uniform rule).
    Both,
    /// All to this operand; the other is held constant (CP-LRP's values).
    Only(usize),
}

impl AttentionStep {
    /// The step under the composite's attention rule (classification does not see the
    /// composite; the plan applies it).
    pub(crate) fn under(self, rule: AttentionRule) -> Self {
        let cp = rule == AttentionRule::CpLrp;
        match self {
            AttentionStep::Softmax { input, axis, .. } => AttentionStep::Softmax {
                input,
                axis,
                blocked: cp,
            },
            AttentionStep::Bilinear {
                operands, weights, ..
            } => AttentionStep::Bilinear {
                operands,
                weights,
                receivers: match weights {
                    Some(w) if cp => Receivers::Only(1 - w),
                    _ => Receivers::Both,
                },
            },
        }
    }
}

pub(crate) fn classify(v: &NodeView<'_, '_>) -> Result<Classified, String> {
    let node = v.node;
    match v.op() {
        "Softmax" => {
            v.only_first_input_is_data()?;
            Ok((
                Treatment::Attention(AttentionStep::Softmax {
                    input: v.first_data()?,
                    axis: node.attr_int("axis").unwrap_or(-1),
                    blocked: false,
                }),
                LayerKind::Softmax,
                vec![],
            ))
        }
        "MatMul" => {
            let [a, b] = node.input.as_slice() else {
                return Err("MatMul needs two inputs".into());
            };
            if !(v.facts.is_data(a) && v.facts.is_data(b)) {
                return Err("a MatMul with a constant operand is a linear layer".into());
            }
            let from_softmax = [a, b].map(|t| comes_from_softmax(v.facts, t));
            let weights = match from_softmax {
                [true, false] => Some(0),
                [false, true] => Some(1),
                _ => None,
            };
            Ok((
                Treatment::Attention(AttentionStep::Bilinear {
                    operands: [a.clone(), b.clone()],
                    weights,
                    receivers: Receivers::Both,
                }),
                LayerKind::Bilinear,
                vec![],
            ))
        }
        _ => Err("no LRP treatment for this op".into()),
    }
}

/// Whether `tensor` is a Softmax's output, possibly reshaped, transposed, cast or scaled by a
/// constant on the way (the ops exporters put between the weights and the product).
fn comes_from_softmax(facts: &GraphFacts<'_>, tensor: &str) -> bool {
    let mut current = tensor.to_owned();
    for _ in 0..8 {
        let Some(node) = facts
            .producer
            .get(current.as_str())
            .map(|&p| &facts.graph.node[p])
        else {
            return false;
        };
        if node.op_type == "Softmax" {
            return true;
        }
        let passes = matches!(
            table::family(&node.op_type),
            Some(table::OpFamily::Layout | table::OpFamily::Elementwise)
        );
        let data: Vec<&String> = node.input.iter().filter(|i| facts.is_data(i)).collect();
        match data.as_slice() {
            [only] if passes => current = (*only).clone(),
            _ => return false,
        }
    }
    false
}

pub(crate) fn backward(
    cx: &mut Backward<'_, '_>,
    node: &NodeProto,
    step: &AttentionStep,
    rule: &Rule,
    r: &str,
) -> Vec<(String, String)> {
    let b = &mut cx.b;
    match step {
        AttentionStep::Softmax { blocked: true, .. } => vec![],
        AttentionStep::Softmax { input, axis, .. } => {
            let s = &node.output[0];
            let axes = b.ints(&[*axis]);
            let total = b.op("ReduceSum", &[r, &axes], vec![attr::int("keepdims", 1)]);
            let expected = b.op("Mul", &[s, &total], vec![]);
            let centred = b.op("Sub", &[r, &expected], vec![]);
            // A masked logit (−∞) has weight 0 and receives nothing; without this, −∞ · 0 = NaN.
            let infinite = b.op("IsInf", &[input], vec![]);
            let zero = b.scalar(0.0);
            let finite_input = b.op("Where", &[&infinite, &zero, input], vec![]);
            vec![(
                input.clone(),
                b.op("Mul", &[&finite_input, &centred], vec![]),
            )]
        }
        AttentionStep::Bilinear {
            operands: [a, bb],
            receivers,
            ..
        } => {
            let mut s = proportional(b, r, &node.output[0], rule);
            if *receivers == Receivers::Both {
                let half = b.scalar(0.5);
                s = b.op("Mul", &[&s, &half], vec![]);
            }
            let einsum = |b: &mut crate::builder::Builder, eq: &str, x: &str, y: &str| {
                b.op("Einsum", &[x, y], vec![attr::string("equation", eq)])
            };
            let mut sent = Vec::new();
            if matches!(receivers, Receivers::Both | Receivers::Only(0)) {
                // S·Bᵀ: [.., n, m] × [.., k, m] → [.., n, k]
                let g = einsum(b, "...nm,...km->...nk", &s, bb);
                sent.push((a.clone(), times_input(b, rule, a, &g)));
            }
            if matches!(receivers, Receivers::Both | Receivers::Only(1)) {
                // Aᵀ·S: [.., n, k] × [.., n, m] → [.., k, m]
                let g = einsum(b, "...nk,...nm->...km", a, &s);
                sent.push((bb.clone(), times_input(b, rule, bb, &g)));
            }
            sent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{classify_one, Input};

    #[test]
    fn a_product_of_activations_is_bilinear_and_a_constant_operand_is_not_attention() {
        let (treatment, kind, _) =
            classify_one("MatMul", &[1, 3, 3], vec![Input::X, Input::X], vec![]).unwrap();
        assert_eq!(kind, LayerKind::Bilinear);
        let Treatment::Attention(step) = treatment else {
            panic!("not attention: {treatment:?}")
        };
        assert!(matches!(
            step,
            AttentionStep::Bilinear {
                weights: None,
                receivers: Receivers::Both,
                ..
            }
        ));
        let (_, kind, _) = classify_one(
            "MatMul",
            &[1, 4],
            vec![Input::X, Input::F32(vec![4, 2], vec![1.0; 8])],
            vec![],
        )
        .unwrap();
        assert_eq!(kind, LayerKind::Dense);
    }

    #[test]
    fn cp_lrp_blocks_the_softmax_and_sends_a_product_to_its_values() {
        let softmax = AttentionStep::Softmax {
            input: "x".into(),
            axis: -1,
            blocked: false,
        };
        assert!(matches!(
            softmax.clone().under(AttentionRule::CpLrp),
            AttentionStep::Softmax { blocked: true, .. }
        ));
        assert!(matches!(
            softmax.under(AttentionRule::AttnLrp),
            AttentionStep::Softmax { blocked: false, .. }
        ));
        let product = |weights| AttentionStep::Bilinear {
            operands: ["a".into(), "v".into()],
            weights,
            receivers: Receivers::Both,
        };
        let receivers = |step: AttentionStep| match step {
            AttentionStep::Bilinear { receivers, .. } => receivers,
            _ => unreachable!(),
        };
        assert_eq!(
            receivers(product(Some(0)).under(AttentionRule::CpLrp)),
            Receivers::Only(1)
        );
        assert_eq!(
            receivers(product(Some(0)).under(AttentionRule::AttnLrp)),
            Receivers::Both
        );
        // Q·Kᵀ has no weights operand: under CP-LRP it receives nothing anyway (the Softmax
        // after it is blocked), and a product of other activations keeps the uniform split.
        assert_eq!(
            receivers(product(None).under(AttentionRule::CpLrp)),
            Receivers::Both
        );
    }
}

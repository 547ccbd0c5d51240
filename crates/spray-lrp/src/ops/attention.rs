//! Attention: a Softmax inside the network and the products of two activations around it
//! (`softmax(Q·Kᵀ)·V` as MatMul, or as Einsum as MaxViT writes it), with AttnLRP's rules
//! (Achtibat et al., ICML 2024):
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
//! the backward products are `Einsum`s (for MatMul with an ellipsis, so the rank need not be
//! known; for an Einsum, its own indices rearranged: `S·Bᵀ` of `a,b->y` is `y,b->a`).

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
        /// The Einsum equations of the two backward products: `S, B → (shaped like A)` and
        /// `A, S → (shaped like B)`.
        backward: [String; 2],
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
                operands,
                weights,
                backward,
                ..
            } => AttentionStep::Bilinear {
                operands,
                weights,
                receivers: match weights {
                    Some(w) if cp => Receivers::Only(1 - w),
                    _ => Receivers::Both,
                },
                backward,
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
        "MatMul" | "Einsum" => {
            let [a, b] = node.input.as_slice() else {
                return Err(format!("{} of other than two operands", v.op()));
            };
            if !(v.facts.is_data(a) && v.facts.is_data(b)) {
                return Err(format!(
                    "{} with a constant operand (a linear layer written as {}): spray's \
                     linear rules need Conv, Gemm or MatMul",
                    v.op(),
                    v.op()
                ));
            }
            let backward = if v.op() == "MatMul" {
                [
                    // S·Bᵀ: [.., n, m] × [.., k, m] → [.., n, k]; Aᵀ·S: → [.., k, m]
                    "...nm,...km->...nk".to_owned(),
                    "...nk,...nm->...km".to_owned(),
                ]
            } else {
                einsum_backward(&node.attr_string("equation").unwrap_or_default())?
            };
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
                    backward,
                }),
                LayerKind::Bilinear,
                vec![],
            ))
        }
        _ => Err("no LRP treatment for this op".into()),
    }
}

/// The backward equations of a two-operand Einsum `a,b->y`: `y,b->a` and `a,y->b`. Every index
/// of an operand must appear in the other operand or the output (else its gradient would need
/// a broadcast Einsum cannot write), none twice within one term, no ellipsis.
fn einsum_backward(equation: &str) -> Result<[String; 2], String> {
    let compact: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let refuse = |why: &str| Err(format!("Einsum '{equation}': {why}"));
    let Some((inputs, output)) = compact.split_once("->") else {
        return refuse("an implicit output is not supported");
    };
    let Some((a, b)) = inputs.split_once(',') else {
        return refuse("not two operands");
    };
    for term in [a, b, output] {
        if !term.chars().all(|c| c.is_ascii_alphabetic()) {
            return refuse("only letters (no ellipsis) are supported");
        }
        let mut seen = std::collections::HashSet::new();
        if !term.chars().all(|c| seen.insert(c)) {
            return refuse("an index repeated within a term (a trace or diagonal)");
        }
    }
    let covered = |x: &str, other: &str| x.chars().all(|c| other.contains(c) || output.contains(c));
    if !(covered(a, b) && covered(b, a)) {
        return refuse("an index summed within one operand");
    }
    Ok([format!("{output},{b}->{a}"), format!("{a},{output}->{b}")])
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
            backward: [to_a, to_b],
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
                let g = einsum(b, to_a, &s, bb);
                sent.push((a.clone(), times_input(b, rule, a, &g)));
            }
            if matches!(receivers, Receivers::Both | Receivers::Only(1)) {
                let g = einsum(b, to_b, a, &s);
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
    fn an_einsum_of_two_activations_gets_its_transposed_products() {
        // MaxViT's attention: q·kᵀ and A·V with a shared batch, group and head index.
        assert_eq!(
            einsum_backward("B G H I D, B G H J D -> B G H I J").unwrap(),
            [
                "BGHIJ,BGHJD->BGHID".to_owned(),
                "BGHID,BGHIJ->BGHJD".to_owned()
            ]
        );
        assert_eq!(
            einsum_backward("ij,jk->ik").unwrap(),
            ["ik,jk->ij".to_owned(), "ij,ik->jk".to_owned()]
        );
        for (equation, why) in [
            ("ij,jk", "implicit output"),
            ("...ij,...jk->...ik", "no ellipsis"),
            ("ii,ij->j", "repeated"),
            ("ijx,jk->ik", "summed within one operand"),
        ] {
            let err = einsum_backward(equation).unwrap_err();
            assert!(err.contains(why), "{equation}: {err}");
        }
        let (treatment, kind, _) = classify_one(
            "Einsum",
            &[1, 3, 3],
            vec![Input::X, Input::X],
            vec![spray_onnx::attr::string("equation", "bij,bjk->bik")],
        )
        .unwrap();
        assert_eq!(kind, LayerKind::Bilinear);
        assert!(matches!(treatment, Treatment::Attention(_)));
        let linear = classify_one(
            "Einsum",
            &[1, 4],
            vec![Input::X, Input::F32(vec![4, 2], vec![1.0; 8])],
            vec![spray_onnx::attr::string("equation", "bi,ij->bj")],
        );
        assert!(linear.unwrap_err().contains("constant operand"));
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
            backward: [String::new(), String::new()],
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

//! LRP rules (thesis Chapter 2; zennit's `rules.py` is the reference for exact semantics).
//!
//! A rule says how the relevance arriving at a layer's output is redistributed onto its input.
//! For linear layers (Conv, Gemm, MatMul) every rule here is an instance of one scheme,
//! zennit's "basic hook": modified copies of the layer (inputs, weights and bias changed)
//! are run forward, the relevance is divided by the stabilised sum of their outputs, sent
//! back through the transposed layer, and recombined with the modified inputs:
//!
//! ```text
//! R_in = Σ_groups Σ_{t ∈ group} c_t · in_t ⊙ Lᵀ_{W_t}( mask_g ⊙ R / stab(Σ_{t ∈ group} s_t · L(in_t; W_t, b_t)) )
//! ```
//!
//! [`Rule::linear_terms`] spells each rule out in exactly that form; the compiler only knows
//! the scheme, not the rules.

use serde::{Deserialize, Serialize};

/// Default stabiliser added to denominators (zennit's default).
pub const DEFAULT_STABILIZER: f32 = 1e-6;

fn default_stabilizer() -> f32 {
    DEFAULT_STABILIZER
}
fn default_epsilon() -> f32 {
    DEFAULT_STABILIZER
}
fn default_alpha() -> f32 {
    2.0
}
fn default_beta() -> f32 {
    1.0
}
fn default_gamma() -> f32 {
    0.25
}

/// An LRP rule with its parameters. Serialised in TOML as `{ rule = "alpha-beta", alpha = 2.0, beta = 1.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rule {
    /// z + ε·sign(z) in the denominator, sign(0) = +1. ε = 0 is LRP-0.
    Epsilon {
        #[serde(default = "default_epsilon")]
        epsilon: f32,
    },
    /// zennit's ZPlus: positive contributions only, x⁺W⁺ + x⁻W⁻ + b⁺.
    ZPlus {
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// αβ with α − β = 1; each part carries its own part of the bias.
    AlphaBeta {
        #[serde(default = "default_alpha")]
        alpha: f32,
        #[serde(default = "default_beta")]
        beta: f32,
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// ♭: inputs and weights replaced by ones, no bias: relevance spread uniformly over the receptive field.
    Flat {
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// w²: inputs replaced by ones, weights squared, no bias.
    WSquare {
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// Generalised γ rule (zennit's `Gamma`): positive contributions boosted by γ.
    Gamma {
        #[serde(default = "default_gamma")]
        gamma: f32,
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// zB for box-constrained inputs: `low`/`high` are one value or one per input channel.
    ZBox {
        low: Vec<f32>,
        high: Vec<f32>,
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// Proportional redistribution for parameter-free sums (average pooling, residual Add).
    Norm {
        #[serde(default = "default_stabilizer")]
        stabilizer: f32,
    },
    /// Relevance passes unchanged (activations, elementwise layers).
    Pass,
    /// Plain gradient (relevance treated as the upstream gradient).
    Gradient,
}

impl Rule {
    pub fn epsilon(epsilon: f32) -> Self {
        Rule::Epsilon { epsilon }
    }
    pub fn zplus() -> Self {
        Rule::ZPlus {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
    pub fn alpha_beta(alpha: f32, beta: f32) -> Self {
        Rule::AlphaBeta {
            alpha,
            beta,
            stabilizer: DEFAULT_STABILIZER,
        }
    }
    pub fn flat() -> Self {
        Rule::Flat {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
    pub fn gamma(gamma: f32) -> Self {
        Rule::Gamma {
            gamma,
            stabilizer: DEFAULT_STABILIZER,
        }
    }
    pub fn norm() -> Self {
        Rule::Norm {
            stabilizer: DEFAULT_STABILIZER,
        }
    }

    /// Short human-readable form, e.g. `alpha-beta(2,1)`.
    pub fn label(&self) -> String {
        match self {
            Rule::Epsilon { epsilon } => format!("epsilon({epsilon})"),
            Rule::ZPlus { .. } => "z-plus".into(),
            Rule::AlphaBeta { alpha, beta, .. } => format!("alpha-beta({alpha},{beta})"),
            Rule::Flat { .. } => "flat".into(),
            Rule::WSquare { .. } => "w-square".into(),
            Rule::Gamma { gamma, .. } => format!("gamma({gamma})"),
            Rule::ZBox { .. } => "z-box".into(),
            Rule::Norm { .. } => "norm".into(),
            Rule::Pass => "pass".into(),
            Rule::Gradient => "gradient".into(),
        }
    }

    /// Check parameters, returning a message on violation.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Rule::AlphaBeta { alpha, beta, .. } => {
                if *alpha < 0.0 || *beta < 0.0 {
                    return Err(format!(
                        "alpha-beta needs alpha, beta >= 0 (got {alpha}, {beta})"
                    ));
                }
                if (alpha - beta - 1.0).abs() > 1e-6 {
                    return Err(format!(
                        "alpha-beta needs alpha - beta = 1 (got {alpha} - {beta})"
                    ));
                }
                Ok(())
            }
            Rule::ZBox { low, high, .. } => {
                if low.is_empty() || high.is_empty() {
                    return Err("z-box needs non-empty low and high bounds".into());
                }
                if low.len() != high.len() && low.len() != 1 && high.len() != 1 {
                    return Err(format!(
                        "z-box low has {} values and high {}: give one value or one per channel",
                        low.len(),
                        high.len()
                    ));
                }
                Ok(())
            }
            Rule::Gamma { gamma, .. } if *gamma < 0.0 => {
                Err(format!("gamma must be >= 0 (got {gamma})"))
            }
            _ => Ok(()),
        }
    }

    /// Whether the rule can be applied to a linear layer (Conv, Gemm, MatMul).
    pub fn applies_to_linear(&self) -> bool {
        !matches!(self, Rule::Pass | Rule::Norm { .. })
    }

    /// The rule as groups of modified forward passes (see the module docs).
    /// `None` for rules that are not of the linear scheme (Pass, Norm).
    pub fn linear_terms(&self) -> Option<Vec<TermGroup>> {
        use InputMod as I;
        use ParamMod as P;
        let t = |input, weight, bias, z_sign: f32, coefficient: f32| Term {
            input,
            weight,
            bias,
            z_sign,
            coefficient,
        };
        let group = |terms, stabilizer, mask| TermGroup {
            terms,
            stabilizer,
            mask,
        };
        Some(match *self {
            Rule::Epsilon { epsilon } => vec![group(
                vec![t(I::Identity, P::Identity, P::Identity, 1.0, 1.0)],
                epsilon,
                OutputMask::All,
            )],
            Rule::Gradient => vec![group(
                vec![t(I::Ones, P::Identity, P::Zero, 1.0, 1.0)],
                f32::NAN, // marker: no division, see `TermGroup::is_gradient`
                OutputMask::All,
            )],
            Rule::ZPlus { stabilizer } => vec![group(
                vec![
                    t(I::Positive, P::Positive, P::Positive, 1.0, 1.0),
                    t(I::Negative, P::Negative, P::Zero, 1.0, 1.0),
                ],
                stabilizer,
                OutputMask::All,
            )],
            Rule::AlphaBeta {
                alpha,
                beta,
                stabilizer,
            } => vec![
                group(
                    vec![
                        t(I::Positive, P::Positive, P::Positive, 1.0, alpha),
                        t(I::Negative, P::Negative, P::Zero, 1.0, alpha),
                    ],
                    stabilizer,
                    OutputMask::All,
                ),
                group(
                    vec![
                        t(I::Positive, P::Negative, P::Negative, 1.0, -beta),
                        t(I::Negative, P::Positive, P::Zero, 1.0, -beta),
                    ],
                    stabilizer,
                    OutputMask::All,
                ),
            ],
            Rule::Flat { stabilizer } => vec![group(
                vec![t(I::Ones, P::Ones, P::Zero, 1.0, 1.0)],
                stabilizer,
                OutputMask::All,
            )],
            Rule::WSquare { stabilizer } => vec![group(
                vec![t(I::Ones, P::Square, P::Zero, 1.0, 1.0)],
                stabilizer,
                OutputMask::All,
            )],
            Rule::Gamma { gamma, stabilizer } => vec![
                group(
                    vec![
                        t(
                            I::Positive,
                            P::GammaPositive(gamma),
                            P::GammaPositive(gamma),
                            1.0,
                            1.0,
                        ),
                        t(I::Negative, P::GammaNegative(gamma), P::Zero, 1.0, 1.0),
                    ],
                    stabilizer,
                    OutputMask::PositiveOutput,
                ),
                group(
                    vec![
                        t(
                            I::Positive,
                            P::GammaNegative(gamma),
                            P::GammaNegative(gamma),
                            1.0,
                            1.0,
                        ),
                        t(I::Negative, P::GammaPositive(gamma), P::Zero, 1.0, 1.0),
                    ],
                    stabilizer,
                    OutputMask::NegativeOutput,
                ),
            ],
            Rule::ZBox { stabilizer, .. } => vec![group(
                vec![
                    t(I::Identity, P::Identity, P::Identity, 1.0, 1.0),
                    t(I::Low, P::Positive, P::Positive, -1.0, -1.0),
                    t(I::High, P::Negative, P::Negative, -1.0, -1.0),
                ],
                stabilizer,
                OutputMask::All,
            )],
            Rule::Norm { .. } | Rule::Pass => return None,
        })
    }
}

/// How a term modifies the layer input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputMod {
    Identity,
    /// max(x, 0)
    Positive,
    /// min(x, 0)
    Negative,
    /// a tensor of ones shaped like x
    Ones,
    /// the z-box lower bound, broadcast like x
    Low,
    /// the z-box upper bound, broadcast like x
    High,
}

/// How a term modifies a parameter (weight or bias).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamMod {
    Identity,
    Positive,
    Negative,
    Zero,
    Ones,
    Square,
    /// p + γ·max(p, 0)
    GammaPositive(f32),
    /// p + γ·min(p, 0)
    GammaNegative(f32),
}

impl ParamMod {
    pub fn apply(self, values: &[f32]) -> Vec<f32> {
        values
            .iter()
            .map(|&p| match self {
                ParamMod::Identity => p,
                ParamMod::Positive => p.max(0.0),
                ParamMod::Negative => p.min(0.0),
                ParamMod::Zero => 0.0,
                ParamMod::Ones => 1.0,
                ParamMod::Square => p * p,
                ParamMod::GammaPositive(g) => p + g * p.max(0.0),
                ParamMod::GammaNegative(g) => p + g * p.min(0.0),
            })
            .collect()
    }
}

/// Which output positions a group's relevance applies to (the γ rule splits by the sign of
/// the layer's unmodified output).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputMask {
    All,
    PositiveOutput,
    NegativeOutput,
}

/// One modified forward pass of a linear layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub input: InputMod,
    pub weight: ParamMod,
    pub bias: ParamMod,
    /// Sign with which this term's output enters the group's denominator.
    pub z_sign: f32,
    /// Coefficient of this term's contribution to the input relevance.
    pub coefficient: f32,
}

/// Terms sharing one denominator.
#[derive(Debug, Clone, PartialEq)]
pub struct TermGroup {
    pub terms: Vec<Term>,
    pub stabilizer: f32,
    pub mask: OutputMask,
}

/// What is known about the sign of a group's denominator z before stabilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownSign {
    Any,
    /// z ≥ 0 for every input: stab(z) = z + ε exactly.
    NonNegative,
    /// z ≤ 0 for every input: stab(z) = z − ε except at z = 0, where zennit adds +ε; there every
    /// product in the sum is zero, so the relevance sent back is zero either way.
    NonPositive,
}

impl TermGroup {
    pub fn is_gradient(&self) -> bool {
        self.stabilizer.is_nan()
    }

    /// The sign of Σ z_sign·L(in; W, b) implied by the modifiers alone.
    pub fn known_sign(&self) -> KnownSign {
        let sign_of = |t: &Term| -> Option<f32> {
            let input = match t.input {
                InputMod::Positive | InputMod::Ones => 1.0,
                InputMod::Negative => -1.0,
                _ => return None,
            };
            let weight = match t.weight {
                ParamMod::Positive | ParamMod::Ones | ParamMod::Square => 1.0,
                ParamMod::Negative => -1.0,
                _ => return None,
            };
            let bias = match t.bias {
                ParamMod::Positive | ParamMod::Zero => 1.0,
                ParamMod::Negative => -1.0,
                _ => return None,
            };
            let product = input * weight;
            (t.bias == ParamMod::Zero || bias == product).then_some(product * t.z_sign)
        };
        let signs: Option<Vec<f32>> = self.terms.iter().map(sign_of).collect();
        match signs {
            Some(s) if !s.is_empty() && s.iter().all(|v| *v > 0.0) => KnownSign::NonNegative,
            Some(s) if !s.is_empty() && s.iter().all(|v| *v < 0.0) => KnownSign::NonPositive,
            _ => KnownSign::Any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_beta_requires_difference_one() {
        assert!(Rule::alpha_beta(2.0, 1.0).validate().is_ok());
        assert!(Rule::alpha_beta(1.0, 0.0).validate().is_ok());
        assert!(Rule::alpha_beta(2.0, 0.5).validate().is_err());
    }

    #[test]
    fn gamma_modifier_matches_zennit_definition() {
        // zennit GammaMod(min=0): p + γ·clamp(p, min=0)
        assert_eq!(
            ParamMod::GammaPositive(0.25).apply(&[2.0, -2.0]),
            vec![2.5, -2.0]
        );
        assert_eq!(
            ParamMod::GammaNegative(0.25).apply(&[2.0, -2.0]),
            vec![2.0, -2.5]
        );
    }

    #[test]
    fn denominator_signs_follow_from_the_modifiers() {
        let zplus = Rule::zplus().linear_terms().unwrap();
        assert_eq!(zplus[0].known_sign(), KnownSign::NonNegative);
        let ab = Rule::alpha_beta(2.0, 1.0).linear_terms().unwrap();
        assert_eq!(ab[0].known_sign(), KnownSign::NonNegative);
        assert_eq!(ab[1].known_sign(), KnownSign::NonPositive);
        assert_eq!(
            Rule::flat().linear_terms().unwrap()[0].known_sign(),
            KnownSign::NonNegative
        );
        assert_eq!(
            Rule::epsilon(0.1).linear_terms().unwrap()[0].known_sign(),
            KnownSign::Any
        );
        assert_eq!(
            Rule::gamma(0.25).linear_terms().unwrap()[0].known_sign(),
            KnownSign::Any
        );
    }

    #[test]
    fn rules_parse_from_toml() {
        #[derive(Deserialize)]
        struct W {
            r: Rule,
        }
        let w: W =
            toml::from_str("r = { rule = \"alpha-beta\", alpha = 3.0, beta = 2.0 }").unwrap();
        assert_eq!(w.r, Rule::alpha_beta(3.0, 2.0));
        let w: W = toml::from_str("r = { rule = \"epsilon\" }").unwrap();
        assert_eq!(w.r, Rule::epsilon(1e-6));
        assert!(toml::from_str::<W>("r = { rule = \"nope\" }").is_err());
    }
}

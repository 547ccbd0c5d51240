//! Composites: which rule each layer gets (thesis §2; zennit's `composites.py` layer maps).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::Rule;

/// The classes of layers a composite assigns rules to, mirroring zennit's module types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// Conv (zennit: `Convolution`).
    Conv,
    /// Gemm, MatMul with constant weights (zennit: `torch.nn.Linear`).
    Dense,
    /// AveragePool, GlobalAveragePool (zennit: `AvgPool`).
    AvgPool,
    /// Residual Add / Sum of two or more activations (zennit: `layer.Sum`).
    Sum,
    /// Relu, LeakyRelu, Sigmoid, Tanh, Clip, … (zennit: `Activation`).
    Activation,
    /// BatchNormalization that could not be merged into a linear layer (zennit: `BatchNorm`).
    BatchNorm,
    /// LRN: relevance passes unchanged (the identity rule; the thesis' baseline, §2, "Local
    /// renormalization layers").
    Normalization,
    /// LayerNormalization (also one written out in primitive ops, fused before planning): by
    /// default σ alone is held constant and the centring and affine map are redistributed by
    /// the `sum` rule, as LXT implements AttnLRP ([`LayerNormRule`]).
    LayerNorm,
    /// Softmax inside the network (attention weights): AttnLRP's rule, the Taylor linearisation
    /// `R_x = x ⊙ (R − s · ΣR)`; under CP-LRP no relevance passes (see [`AttentionRule`]).
    Softmax,
    /// MatMul of two activations (`Q·Kᵀ`, `A·V`): the `sum` rule's proportional split of a
    /// bilinear product, half to each operand (AttnLRP's uniform rule); under CP-LRP the
    /// attention weights are held constant and the values receive all of it.
    Bilinear,
    /// Elementwise Add/Sub/Mul/Div with a constant, e.g. input normalisation baked into the graph.
    Elementwise,
    /// MaxPool: winner takes all (the gradient), as in zennit.
    MaxPool,
    /// Multiplication of an activation by a gate computed from activations (SiLU, squeeze-excite):
    /// all relevance goes to the signal, none to the gate.
    Gate,
    /// Ops that only move values: Reshape, Flatten, Transpose, Concat, Pad, Squeeze, … Relevance is
    /// moved exactly like the values; no rule applies.
    Structural,
}

impl LayerKind {
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Dense => "dense",
            LayerKind::AvgPool => "avgpool",
            LayerKind::Sum => "sum",
            LayerKind::Activation => "activation",
            LayerKind::BatchNorm => "batchnorm",
            LayerKind::Normalization => "normalization",
            LayerKind::LayerNorm => "layernorm",
            LayerKind::Softmax => "softmax",
            LayerKind::Bilinear => "bilinear",
            LayerKind::Elementwise => "elementwise",
            LayerKind::MaxPool => "maxpool",
            LayerKind::Gate => "gate",
            LayerKind::Structural => "structural",
        }
    }
}

/// Which layers count as "the first layer" for a composite's special first-layer rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FirstLayer {
    /// The first Conv or Dense layer in forward order (zennit `first_map` with `Linear`).
    #[default]
    AnyLinear,
    /// The first Conv layer in forward order (zennit `EpsilonGammaBox`).
    Conv,
}

/// How relevance passes through attention (a Softmax and the MatMuls of two activations around
/// it). Both follow the AttnLRP paper (Achtibat et al., ICML 2024) and its reference
/// implementation LXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionRule {
    /// AttnLRP: relevance passes through the softmax (its linearisation) and is split uniformly
    /// between the two operands of every product of activations, so queries and keys receive
    /// their share.
    #[default]
    AttnLrp,
    /// CP-LRP (Ali et al., 2022): the attention weights are held constant, so relevance reaches
    /// the input through the values only (LXT's preset for torchvision's ViT).
    CpLrp,
}

impl AttentionRule {
    pub fn name(self) -> &'static str {
        match self {
            AttentionRule::AttnLrp => "attn-lrp",
            AttentionRule::CpLrp => "cp-lrp",
        }
    }

    fn is_default(&self) -> bool {
        *self == AttentionRule::default()
    }
}

/// How relevance passes a (fused) LayerNormalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LayerNormRule {
    /// Only the standard deviation is held constant: `y = γ ⊙ (x − mean x)/σ + β` is a linear map
    /// of `x` per sample, redistributed proportionally (the bias keeps its share). This is what
    /// AttnLRP's reference implementation LXT computes (`layer_norm_forward` under Gradient ×
    /// Input). The default: relevance stays proportional to the activations, which the layers
    /// before a LayerNorm divide by.
    #[default]
    Linear,
    /// Relevance passes unchanged (mean and σ held constant, the bias takes no share). In a
    /// pre-norm transformer this hands relevance of the normalised scale to a residual stream
    /// of a much smaller one, and the proportional rules before it amplify it: measured on the
    /// attention fixtures, maps 100–175× the reference's max|R| (see benches/RESULTS.md).
    Identity,
}

impl LayerNormRule {
    fn is_default(&self) -> bool {
        *self == LayerNormRule::default()
    }
}

/// A mapping from layers to rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Composite {
    pub name: String,
    /// Rule for the first linear layer, if it differs from its class's rule.
    #[serde(default)]
    pub first: Option<Rule>,
    #[serde(default)]
    pub first_layer: FirstLayer,
    pub conv: Rule,
    pub dense: Rule,
    #[serde(default = "Rule::norm")]
    pub avgpool: Rule,
    #[serde(default = "Rule::norm")]
    pub sum: Rule,
    /// Attention's Softmax and products of activations (transformers). Left out of the
    /// serialised form when it is the default, so composites written before it keep their bytes.
    #[serde(default, skip_serializing_if = "AttentionRule::is_default")]
    pub attention: AttentionRule,
    /// LayerNormalization's rule; serialised only when it is not the default.
    #[serde(default, skip_serializing_if = "LayerNormRule::is_default")]
    pub layer_norm: LayerNormRule,
    /// Rules for named nodes (ONNX node names), taking precedence over everything else.
    #[serde(default)]
    pub nodes: BTreeMap<String, Rule>,
}

/// Options for the built-in composites that need them.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeOptions {
    /// z-box bounds for `epsilon-gamma-box`: one value or one per input channel.
    pub zbox_low: Vec<f32>,
    pub zbox_high: Vec<f32>,
}

impl Default for CompositeOptions {
    fn default() -> Self {
        // zennit's documented default for raw image data in [0, 1].
        CompositeOptions {
            zbox_low: vec![0.0],
            zbox_high: vec![1.0],
        }
    }
}

/// Names of the built-in composites.
pub const BUILTIN_COMPOSITES: &[&str] = &[
    "epsilon",
    "epsilon-plus",
    "epsilon-plus-flat",
    "epsilon-alpha2-beta1",
    "epsilon-alpha2-beta1-flat",
    "epsilon-gamma-box",
    "thesis",
];

/// Which composite a user asked for: a built-in by name, or a TOML file (any name ending in
/// `.toml`). Parsed once at the edge (CLI flag, pipeline file) and resolved where the rules are
/// needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompositeSpec {
    Builtin(String),
    File(std::path::PathBuf),
}

impl CompositeSpec {
    /// The composite used when none is named: zennit's EpsilonPlusFlat.
    pub const DEFAULT: &'static str = "epsilon-plus-flat";

    /// The composite file, if the spec names one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            CompositeSpec::File(path) => Some(path),
            CompositeSpec::Builtin(_) => None,
        }
    }

    /// A file spec relative to `base` (the pipeline file's folder); built-ins unchanged.
    pub fn relative_to(self, base: &std::path::Path) -> Self {
        match self {
            CompositeSpec::File(path) if path.is_relative() => CompositeSpec::File(base.join(path)),
            other => other,
        }
    }

    /// Whether the rules need the input's value range (the z-box rule on the first layer).
    pub fn needs_input_bounds(&self) -> bool {
        matches!(self, CompositeSpec::Builtin(name) if name == "epsilon-gamma-box")
    }

    /// The rules: the built-in composite, or the file read and checked.
    pub fn resolve(&self, options: &CompositeOptions) -> Result<Composite, CompositeError> {
        match self {
            CompositeSpec::Builtin(name) => Composite::builtin(name, options),
            CompositeSpec::File(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| CompositeError::File {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                Composite::from_toml(&text).map_err(|e| match e {
                    CompositeError::File { reason, .. } => CompositeError::File {
                        path: shown,
                        reason,
                    },
                    other => other,
                })
            }
        }
    }
}

impl Default for CompositeSpec {
    fn default() -> Self {
        CompositeSpec::Builtin(Self::DEFAULT.to_owned())
    }
}

impl std::str::FromStr for CompositeSpec {
    type Err = CompositeError;

    /// A name ending in `.toml` is a file; anything else must be a built-in composite.
    fn from_str(s: &str) -> Result<Self, CompositeError> {
        if s.ends_with(".toml") {
            Ok(CompositeSpec::File(s.into()))
        } else if BUILTIN_COMPOSITES.contains(&s) {
            Ok(CompositeSpec::Builtin(s.to_owned()))
        } else {
            Err(CompositeError::Unknown(s.to_owned()))
        }
    }
}

impl std::fmt::Display for CompositeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompositeSpec::Builtin(name) => f.write_str(name),
            CompositeSpec::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl serde::Serialize for CompositeSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CompositeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompositeError {
    #[error("unknown composite '{0}'; built-in composites are: {list}", list = BUILTIN_COMPOSITES.join(", "))]
    Unknown(String),
    #[error("cannot read composite file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("composite '{composite}': {layer}: {reason}")]
    Invalid {
        composite: String,
        layer: String,
        reason: String,
    },
}

impl Composite {
    fn base(name: &str, conv: Rule, dense: Rule) -> Self {
        Composite {
            name: name.to_owned(),
            first: None,
            first_layer: FirstLayer::AnyLinear,
            conv,
            dense,
            avgpool: Rule::norm(),
            sum: Rule::norm(),
            attention: AttentionRule::default(),
            layer_norm: LayerNormRule::default(),
            nodes: BTreeMap::new(),
        }
    }

    /// A built-in composite, following zennit's layer maps (ε = 1e-6 on dense layers,
    /// stabiliser 1e-6 everywhere) plus the thesis setting.
    pub fn builtin(name: &str, options: &CompositeOptions) -> Result<Self, CompositeError> {
        let eps = Rule::epsilon(1e-6);
        let composite = match name {
            "epsilon" => Self::base(name, eps.clone(), eps),
            "epsilon-plus" => Self::base(name, Rule::zplus(), eps),
            "epsilon-plus-flat" => Composite {
                first: Some(Rule::flat()),
                ..Self::base(name, Rule::zplus(), eps)
            },
            "epsilon-alpha2-beta1" => Self::base(name, Rule::alpha_beta(2.0, 1.0), eps),
            "epsilon-alpha2-beta1-flat" => Composite {
                first: Some(Rule::flat()),
                ..Self::base(name, Rule::alpha_beta(2.0, 1.0), eps)
            },
            "epsilon-gamma-box" => Composite {
                first: Some(Rule::ZBox {
                    low: options.zbox_low.clone(),
                    high: options.zbox_high.clone(),
                    stabilizer: crate::rules::DEFAULT_STABILIZER,
                }),
                first_layer: FirstLayer::Conv,
                ..Self::base(name, Rule::gamma(0.25), eps)
            },
            // Lapuschkin (2019), §6.3: αβ (α=2, β=1) on conv layers, ε = 0.01 on dense layers,
            // ♭ on the first layer.
            "thesis" => Composite {
                first: Some(Rule::flat()),
                ..Self::base(name, Rule::alpha_beta(2.0, 1.0), Rule::epsilon(0.01))
            },
            other => return Err(CompositeError::Unknown(other.to_owned())),
        };
        composite.validate()?;
        Ok(composite)
    }

    /// Parse a custom composite from TOML, e.g.
    ///
    /// ```toml
    /// name = "mine"
    /// first = { rule = "flat" }
    /// conv = { rule = "alpha-beta", alpha = 2.0, beta = 1.0 }
    /// dense = { rule = "epsilon", epsilon = 0.01 }
    /// [nodes]
    /// "/features/features.0/Conv" = { rule = "z-box", low = [-2.1], high = [2.6] }
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, CompositeError> {
        let composite: Composite = toml::from_str(text).map_err(|e| CompositeError::File {
            path: "<toml>".into(),
            reason: e.to_string(),
        })?;
        composite.validate()?;
        Ok(composite)
    }

    /// Resolve a composite given as a built-in name or a path to a TOML file.
    pub fn validate(&self) -> Result<(), CompositeError> {
        let invalid = |layer: &str, reason: String| CompositeError::Invalid {
            composite: self.name.clone(),
            layer: layer.to_owned(),
            reason,
        };
        let mut linear: Vec<(&str, &Rule)> = vec![("conv", &self.conv), ("dense", &self.dense)];
        if let Some(first) = &self.first {
            linear.push(("first", first));
        }
        for (layer, rule) in linear {
            rule.validate().map_err(|r| invalid(layer, r))?;
            if !rule.applies_to_linear() {
                return Err(invalid(
                    layer,
                    format!("rule {} cannot be used on linear layers", rule.label()),
                ));
            }
        }
        for (layer, rule) in [("avgpool", &self.avgpool), ("sum", &self.sum)] {
            if !matches!(
                rule,
                Rule::Norm { .. } | Rule::Epsilon { .. } | Rule::Gradient
            ) {
                return Err(invalid(
                    layer,
                    format!("use norm, epsilon or gradient here, not {}", rule.label()),
                ));
            }
        }
        for (node, rule) in &self.nodes {
            rule.validate().map_err(|r| invalid(node, r))?;
        }
        Ok(())
    }

    /// The rule for a layer of `kind`; `is_first` marks the first linear layer.
    pub fn rule_for(&self, kind: LayerKind, node_name: &str, is_first: bool) -> Rule {
        if let Some(rule) = self.nodes.get(node_name) {
            return rule.clone();
        }
        if is_first {
            if let Some(rule) = &self.first {
                return rule.clone();
            }
        }
        match kind {
            LayerKind::Conv => self.conv.clone(),
            LayerKind::Dense => self.dense.clone(),
            LayerKind::AvgPool => self.avgpool.clone(),
            LayerKind::Sum | LayerKind::Bilinear => self.sum.clone(),
            LayerKind::LayerNorm => match self.layer_norm {
                LayerNormRule::Identity => Rule::Pass,
                LayerNormRule::Linear => self.sum.clone(),
            },
            LayerKind::MaxPool => Rule::Gradient,
            LayerKind::Activation
            | LayerKind::BatchNorm
            | LayerKind::Normalization
            | LayerKind::Softmax
            | LayerKind::Elementwise
            | LayerKind::Gate
            | LayerKind::Structural => Rule::Pass,
        }
    }

    /// Whether a layer of `kind` is eligible as the composite's first layer.
    pub fn first_layer_accepts(&self, kind: LayerKind) -> bool {
        match self.first_layer {
            FirstLayer::AnyLinear => matches!(kind, LayerKind::Conv | LayerKind::Dense),
            FirstLayer::Conv => kind == LayerKind::Conv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_composite_file_shipped_in_configs_parses() {
        // Read at run time: CI reuses one target dir across clones.
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
            .join("../../configs/composites");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Composite::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 2, "{seen} composite files in {}", dir.display());
        let cp =
            Composite::from_toml(&std::fs::read_to_string(dir.join("vit-cp-lrp.toml")).unwrap())
                .unwrap();
        assert_eq!(cp.attention, AttentionRule::CpLrp);
    }

    #[test]
    fn every_builtin_resolves_and_validates() {
        for name in BUILTIN_COMPOSITES {
            let c = Composite::builtin(name, &CompositeOptions::default()).unwrap();
            assert_eq!(c.name, *name);
        }
        assert!(matches!(
            Composite::builtin("lrp-magic", &CompositeOptions::default()),
            Err(CompositeError::Unknown(_))
        ));
    }

    #[test]
    fn custom_toml_composite_with_node_override() {
        let c = Composite::from_toml(
            r#"
            name = "mine"
            first = { rule = "flat" }
            conv = { rule = "alpha-beta", alpha = 1.0, beta = 0.0 }
            dense = { rule = "epsilon", epsilon = 0.25 }
            [nodes]
            "fc2" = { rule = "epsilon", epsilon = 0.0 }
            "#,
        )
        .unwrap();
        assert_eq!(
            c.rule_for(LayerKind::Dense, "fc1", false),
            Rule::epsilon(0.25)
        );
        assert_eq!(
            c.rule_for(LayerKind::Dense, "fc2", false),
            Rule::epsilon(0.0)
        );
        assert_eq!(c.rule_for(LayerKind::Conv, "c1", true), Rule::flat());
        assert_eq!(c.rule_for(LayerKind::AvgPool, "p", false), Rule::norm());
    }

    #[test]
    fn invalid_custom_composite_is_refused() {
        let err = Composite::from_toml(
            r#"
            name = "bad"
            conv = { rule = "alpha-beta", alpha = 3.0, beta = 1.0 }
            dense = { rule = "epsilon" }
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("alpha - beta = 1"), "{err}");
        let err = Composite::from_toml(
            "name = \"x\"\nconv = { rule = \"pass\" }\ndense = { rule = \"epsilon\" }",
        )
        .unwrap_err();
        assert!(err.to_string().contains("linear"), "{err}");
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn a_spec_is_a_builtin_name_or_a_toml_file() {
        let builtin: CompositeSpec = "thesis".parse().unwrap();
        assert_eq!(builtin, CompositeSpec::Builtin("thesis".into()));
        assert_eq!(builtin.file(), None);
        let file: CompositeSpec = "rules/mine.toml".parse().unwrap();
        assert_eq!(file.file(), Some(std::path::Path::new("rules/mine.toml")));
        assert_eq!(
            file.clone()
                .relative_to(std::path::Path::new("/p"))
                .to_string(),
            "/p/rules/mine.toml"
        );
        assert_eq!(
            builtin.clone().relative_to(std::path::Path::new("/p")),
            builtin
        );
        let err = "epsilon-pluss".parse::<CompositeSpec>().unwrap_err();
        assert!(err.to_string().contains("built-in composites are"), "{err}");
        assert_eq!(CompositeSpec::default().to_string(), CompositeSpec::DEFAULT);
        assert!(BUILTIN_COMPOSITES.contains(&CompositeSpec::DEFAULT));
        assert!("epsilon-gamma-box"
            .parse::<CompositeSpec>()
            .unwrap()
            .needs_input_bounds());
    }

    #[test]
    fn a_missing_file_is_named() {
        let spec: CompositeSpec = "/nonexistent/rules.toml".parse().unwrap();
        let err = spec.resolve(&CompositeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rules.toml"), "{err}");
    }
}

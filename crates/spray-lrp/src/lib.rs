//! The LRP compiler: turns any supported ONNX classifier into an ONNX model that computes the
//! logits *and* the Layer-wise Relevance Propagation map of the input, so ONNX Runtime runs the
//! backward pass with its own kernels on whatever execution provider is available.
//!
//! - [`rules`]: the LRP rules and their exact semantics (zennit is the reference);
//! - [`composite`]: which rule each layer gets, by name or from TOML;
//! - [`compile`]: the driver of the graph rewrite (input choice, the `one_hot ⊙ logits` seed,
//!   the reverse walk, the outputs);
//! - `forward`: [`LrpModel::forward_model`], the logits alone (plain inference for stages
//!   that need only the model's decision);
//! - `steer`: [`LrpModel::steered_model`], the forward half with an offset added at a concept
//!   layer and the layer's activation read out (the verify stage's model-side tests);
//! - `fold`: input-independent tensors on the relevance path evaluated into constants first
//!   (element moves and integer arithmetic here, the rest by a [`ConstantEvaluator`]);
//! - `plan`: which treatment and rule each relevance-path node gets, decided up front;
//! - `ops`: one file per op family, recognition and backward emission side by side, and
//!   [`ops::table`], the one table of every op the compiler knows;
//! - [`inspect`]: a human-readable plan of what the compiler would do.

mod builder;
mod compile;
pub mod composite;
mod concept;
mod contract;
mod fold;
mod forward;
mod graph;
pub mod inspect;
mod normalize;
pub mod ops;
mod plan;
pub mod rules;
mod steer;

pub use compile::{compile, compile_owned, CompileOptions, LrpModel, LrpSignature};
pub use composite::{
    AttentionRule, Composite, CompositeError, CompositeOptions, CompositeSpec, LayerKind,
    LayerNormRule, BUILTIN_COMPOSITES,
};
pub use concept::{ChannelAxis, ConceptLayer, ConceptOutput, ConceptTensor};
pub use fold::ConstantEvaluator;
pub use normalize::{NEWEST_IR_VERSION, NEWEST_OPSET};
pub use plan::LayerPlan;
pub use rules::Rule;
pub use steer::SteeredModel;

/// A digest of the compiler's source (build.rs): what a cache of compiled models, or of
/// relevance computed with them, must be keyed by beside the model and the rules. Why: the
/// spray version does not change when the compiler does, and a cache made by an older
/// compiler would otherwise be served after an upgrade.
pub const COMPILER_REVISION: &str = env!("SPRAY_LRP_SOURCE_DIGEST");

/// A node the compiler cannot propagate relevance through.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedNode {
    pub op_type: String,
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for UnsupportedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} node '{}': {}", self.op_type, self.name, self.reason)
    }
}

/// "MatMul ×24, Softmax ×12": what a long list of refused nodes comes down to.
fn count_by_op(nodes: &[UnsupportedNode]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in nodes {
        match counts.iter_mut().find(|(op, _)| *op == n.op_type) {
            Some((_, c)) => *c += 1,
            None => counts.push((&n.op_type, 1)),
        }
    }
    counts
        .iter()
        .map(|(op, c)| format!("{op} ×{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum LrpError {
    #[error(
        "the model cannot be explained: {} unsupported node(s) on the path from input to logits ({}):\n{}",
        .0.len(),
        count_by_op(.0),
        .0.iter().map(|n| format!("  - {n}")).collect::<Vec<_>>().join("\n")
    )]
    Unsupported(Vec<UnsupportedNode>),
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Composite(#[from] CompositeError),
    #[error(transparent)]
    Onnx(#[from] spray_onnx::OnnxError),
}

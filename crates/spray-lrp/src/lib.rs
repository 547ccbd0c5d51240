//! The LRP compiler: turns any supported ONNX classifier into an ONNX model that computes the
//! logits *and* the Layer-wise Relevance Propagation map of the input, so ONNX Runtime runs the
//! backward pass with its own kernels on whatever execution provider is available.
//!
//! - [`rules`]: the LRP rules and their exact semantics (zennit is the reference);
//! - [`composite`]: which rule each layer gets, by name or from TOML;
//! - [`compile`]: the graph rewrite;
//! - [`inspect`]: a human-readable plan of what the compiler would do.

mod builder;
mod compile;
pub mod composite;
mod graph;
pub mod inspect;
mod normalize;
pub mod rules;

pub use compile::{compile, CompileOptions, LayerPlan, LrpModel, LrpSignature};
pub use composite::{Composite, CompositeError, CompositeOptions, LayerKind, BUILTIN_COMPOSITES};
pub use rules::Rule;

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

#[derive(Debug, thiserror::Error)]
pub enum LrpError {
    #[error(
        "the model cannot be explained: {} unsupported node(s) on the path from input to logits:\n{}",
        .0.len(),
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

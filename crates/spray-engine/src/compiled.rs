//! A compiled LRP model as a stage receives it: in memory, or its signature and how to load it
//! when the stage needs the graph. Why: a process that loads ONNX Runtime's kept graph
//! (`OptimizedCache`) needs only the signature, and vgg16's compiled graph is 0.67 GB held for
//! the whole stage otherwise.

use std::borrow::Cow;

use spray_lrp::{LrpModel, LrpSignature};

/// Loads a compiled model (a cache read, or compiling again); its error as text.
pub type LoadModel<'a> = Box<dyn Fn() -> Result<LrpModel, String> + Send + Sync + 'a>;

/// The compiled LRP model a stage works with.
pub enum CompiledModel<'a> {
    /// In memory.
    Loaded(&'a LrpModel),
    /// Its signature, and the model loaded only where the stage needs the graph.
    Deferred {
        signature: LrpSignature,
        load: LoadModel<'a>,
    },
}

impl CompiledModel<'_> {
    pub fn signature(&self) -> &LrpSignature {
        match self {
            CompiledModel::Loaded(model) => &model.signature,
            CompiledModel::Deferred { signature, .. } => signature,
        }
    }

    /// The model: the one in memory, or loaded now (each call loads it again: keep it).
    pub fn graph(&self) -> Result<Cow<'_, LrpModel>, String> {
        match self {
            CompiledModel::Loaded(model) => Ok(Cow::Borrowed(*model)),
            CompiledModel::Deferred { load, .. } => load().map(Cow::Owned),
        }
    }
}

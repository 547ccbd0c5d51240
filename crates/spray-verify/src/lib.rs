//! Stage 3 (before the report): turn suspicious groups into evidence.
//!
//! SpRAy ranks *suspects*. For the most suspicious classes this stage asks the model itself
//! whether it depends on what a group of the analysis has in common (thesis §6.3's manual
//! tests, made automatic). Each space's groups are tested by its evidence test
//! ([`spray_store::EvidenceTest`], one file each under [`probe`]); every test is measured the
//! same way ([`evidence`]):
//!
//! - **occlusion**: what the test takes away from the group's images (a region filled, or the
//!   colours of another image) → relative drop of the class logit and of accuracy; the same
//!   on the class's other images as the contrast;
//! - **transplant**: what the test gives from the group's images to other classes' images
//!   (a region pasted, or the colours) → gain of this class's logit and the share of
//!   predictions that flip to it; the control gives the same from the class's other images,
//!   and the stronger control counts.
//!
//! Also per class: padding sensitivity ([`padding`]) and AOPC ([`aopc`]). Output: the tables
//! of [`spray_store::verify`], strongest evidence first. Logits come from the same compiled
//! LRP model and batches as the relevance stage (pre-softmax, target = predicted), through
//! the [`scorer::Scorer`] trait.

pub mod aopc;
pub mod direction;
pub mod evidence;
pub mod examples;
pub mod groups;
pub mod images;
pub mod members;
pub mod padding;
mod perturb;
pub mod probe;
mod recipients;
pub mod region;
pub mod scorer;
mod settings;
mod spectrum;
mod stage;
mod transplant;
mod verdict;
mod workers;

pub use padding::SQUARE_MODES;
pub use settings::{Fill, RegionControl, VerifySettings};
pub use spray_store::verify::{
    aopc_path, evidence_json_path, evidence_path, manifest_path, padding_path, Aopc, Evidence,
    PaddingEffect,
};
pub use stage::{chosen_classes, fingerprint, run, ClassCost, VerifyJob, VerifySummary};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error(transparent)]
    Engine(#[from] spray_engine::EngineError),
    /// The compiled model could not be loaded where the stage needed it.
    #[error("loading the compiled LRP model: {0}")]
    LoadModel(String),
    /// An image that decoded in the relevance stage no longer does (changed on disk).
    #[error("{path}: {reason} (it decoded in the relevance stage)")]
    Decode { path: String, reason: String },
    /// A relevance row names an image the dataset does not have (another dataset's rows).
    #[error("image {0} is not in the dataset: the relevance stage read another dataset")]
    UnknownImage(usize),
    /// Neither the analysis grid nor the full map is stored.
    #[error("{dir}: the relevance dataset stores neither the grid {grid} nor the full map")]
    NoMaps { dir: String, grid: usize },
    /// A before/after picture could not be encoded.
    #[error("{path}: cannot encode the picture: {reason}")]
    Picture { path: String, reason: String },
    /// A prepared tensor does not have the model input's size (an internal error).
    #[error("a prepared image does not fit the model input: {0}")]
    TensorShape(String),
    /// A model-side test asked for a concept layer the model does not have (an internal
    /// error: the tests ask only for `Scorer::layers`).
    #[error("the model has no steerable concept layer {0}")]
    NoLayer(usize),
    /// One of the stage's threads (a worker, or a worker's picture thread) panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// The steered model could not be built.
    #[error(transparent)]
    Lrp(#[from] spray_lrp::LrpError),
}

pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

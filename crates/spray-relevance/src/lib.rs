//! Stage 1: relevance maps for a whole dataset, written as a Parquet dataset.
//!
//! The dataset's images are cut into fixed *parts* (`part_size` consecutive images). A part is
//! the unit of work, of sharding (`--shard i/n` takes the parts p with p mod n = i) and of
//! resumption (a part whose file exists is done). Part boundaries depend only on the dataset
//! and `part_size`, so any sharding writes the same files as one process.
//!
//! Decoding runs on rayon's pool in a producer thread, one batch ahead of ONNX Runtime,
//! through a bounded channel: memory holds at most a few batches plus one part's rows.
//!
//! - `stage`: the driver ([`run`]);
//! - `parts`: parts, the folder's manifest and its guard, writing a finished part;
//! - `pipeline`: the decode → explain pipeline;
//! - `explain`: one batch through the model, the model's health on the first batch;
//! - `record`: one explained sample as a [`spray_store::relevance::RelevanceRecord`];
//! - [`maps`](channel_sum): channel sums, pooling, thumbnails;
//! - `attributions`: maps computed elsewhere, from an HDF5 file in CoRelAy's layout
//!   ([`import_attributions`]).

mod attributions;
mod explain;
mod job;
mod maps;
mod parts;
mod pipeline;
mod record;
mod settings;
mod stage;

use std::path::PathBuf;

use spray_dataset::TensorLayout;

pub use attributions::{import_attributions, AttributionImport, ImportSummary, IMPORT_MARKER};
pub use job::{fingerprint, RelevanceJob, RelevanceSummary};
pub use maps::{channel_sum, image_grid, sum_pool};
pub use settings::{RelevanceSettings, TargetMode};
pub use spray_engine::CompiledModel;
pub use spray_store::relevance::{
    errors_path, finished_parts, manifest_path, part_path, read_manifest, RelevanceManifest,
};
pub use spray_store::Shard;
pub use stage::run;

#[derive(Debug, thiserror::Error)]
pub enum RelevanceError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error(transparent)]
    Engine(#[from] spray_engine::EngineError),
    /// A `[relevance]` setting the stage cannot work with.
    #[error("[relevance] {key} {reason}")]
    InvalidSetting {
        key: &'static str,
        reason: &'static str,
    },
    /// The stage folder could not be created.
    #[error("cannot create {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stage folder holds parts computed from other inputs or settings: they are never
    /// mixed with new ones.
    #[error(
        "{} holds relevance maps computed from other inputs or settings; \
         use another output folder or rerun with --force relevance",
        dir.display()
    )]
    StaleParts { dir: PathBuf },
    /// The batches `[model]` prepares do not fit the model's declared input.
    #[error(
        "the model's input is [{}] but [model] prepares {} batches of {height}x{width} images \
         with 3 channels{}",
        shown_dims(.declared),
        batch_dims(*.layout),
        layout_hint(*.layout, *.other_layout_fits)
    )]
    InputMismatch {
        /// The model's declared input shape (`None`: symbolic).
        declared: Vec<Option<i64>>,
        layout: TensorLayout,
        height: u32,
        width: u32,
        /// Whether the other memory order would fit.
        other_layout_fits: bool,
    },
    /// The prepared images could not be assembled into one input batch.
    #[error("assembling a batch of prepared images")]
    Batch(#[source] ndarray::ShapeError),
    /// The model explained a class it has no output for.
    #[error("{sample_id}: class {class} is outside the model's {classes} outputs")]
    TargetOutOfRange {
        sample_id: String,
        class: i64,
        classes: usize,
    },
    /// The concept output's width differs from the concept layers' channel count.
    #[error("the concept layers gave {got} channels, their weights say {expected}")]
    ConceptChannels { got: usize, expected: usize },
    /// The model computes NaN or ∞ for everything it is given: nothing it explains can be used.
    #[error("{0}")]
    NonFinite(String),
    /// The compiled model could not be loaded where the stage needed it.
    #[error("loading the compiled LRP model: {0}")]
    LoadModel(String),
    /// An attribution file (`import_attributions`) that cannot be read as one.
    #[error("{}: {reason}", path.display())]
    Attributions { path: PathBuf, reason: String },
}

fn shown_dims(dims: &[Option<i64>]) -> String {
    let shown: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    shown.join(", ")
}

fn batch_dims(layout: TensorLayout) -> &'static str {
    match layout {
        TensorLayout::Nchw => "[N, 3, H, W]",
        TensorLayout::Nhwc => "[N, H, W, 3]",
    }
}

/// The fix for an input mismatch: the other memory order when it fits.
fn layout_hint(layout: TensorLayout, other_layout_fits: bool) -> &'static str {
    match layout {
        TensorLayout::Nchw if other_layout_fits => {
            " (channels last: set layout = \"nhwc\" under [model])"
        }
        TensorLayout::Nhwc if other_layout_fits => {
            " (channels first: set layout = \"nchw\" under [model])"
        }
        _ => " (check input_size and layout under [model])",
    }
}

pub type Result<T, E = RelevanceError> = std::result::Result<T, E>;

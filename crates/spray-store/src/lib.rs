//! The data contracts between spray's stages: the Parquet tables each stage writes and the
//! next one reads, with typed rows, and the one way files become visible (atomically, by rename).
//!
//! Every table lives in one module here so that a schema change is one edit, seen by the writer
//! and all readers at once. ARCHITECTURE.md lists the columns.

pub mod analysis;
mod columns;
pub mod csv;
pub mod fingerprint;
pub mod group;
mod io;
pub mod lock;
pub mod manifest;
pub mod ranking;
pub mod relevance;
mod shard;
pub mod space;
pub mod stage;
pub mod verify;

pub use fingerprint::{file_digest, Fingerprint, StageKey};
pub use group::{AnalysisGroup, ClusterLevel, GroupId};
pub use io::{
    list_parquet, read_batches, read_batches_of, tmp_path_for, write_atomically,
    write_batches_atomically,
};
pub use lock::{LockMode, OutputLock};
pub use shard::Shard;
pub use space::{EvidenceTest, FeatureSpace, SpaceSpec, SPACES};
pub use stage::{StageState, StageStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parquet { path: String, message: String },
    #[error("{0}")]
    Incomplete(String),
    /// Another process holds the output folder.
    #[error("{0}")]
    Busy(String),
    /// A value could not be serialised (a unit, a manifest, a table).
    #[error("{path}: cannot write: {message}")]
    Encode { path: String, message: String },
    /// A stage folder holds results of other inputs or settings: mixing them would be wrong.
    #[error(
        "{dir} holds {stage} results of other inputs or settings; use another folder or rerun \
         with --force {stage}"
    )]
    Foreign { dir: String, stage: &'static str },
    #[error("{path}: column `{column}`: {message}")]
    Schema {
        path: String,
        column: String,
        message: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

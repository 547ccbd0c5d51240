//! Stage 2: Spectral Relevance Analysis (thesis Ch. 6, Appendix E, Algorithm 3).
//!
//! Per group (each explained class, or all samples): prepare the pooled maps, build the kNN
//! graph (k = ⌈ln n⌉, binary, symmetrised by max), form L_sym, take its smallest eigenpairs,
//! read the eigengap, cluster the spectral embedding and embed the samples in 2-D with t-SNE.
//! The same is done in the other feature spaces the relevance dataset stores (the downsized
//! inputs, the concept layers, the colour statistics).
//!
//! - `stage`: [`run`], the stage driver; `read` and `dataset`: the relevance dataset as the
//!   analysis keeps it; `output`: the output folder (fingerprint, manifest, what is left to
//!   do); `schedule`: the worker threads;
//! - `spaces`: everything that differs per feature space (which spaces, their features,
//!   their layout);
//! - `group`: [`analyze_group`], SpRAy on one group in one space, with its steps in `search`
//!   (the neighbour search), [`graph`], [`eigen`], `spectrum` (the reading of the spectrum),
//!   [`embed`] (clusters, t-SNE's start) and [`contrast`] (the ranking criterion);
//! - the numerics: [`ann`], [`lanczos`], [`chebyshev`], [`tsne`], [`features`].

pub mod ann;
pub mod chebyshev;
pub mod contrast;
mod dataset;
pub mod eigen;
pub mod embed;
mod error;
pub mod features;
pub mod graph;
mod group;
mod in_memory;
pub mod lanczos;
mod output;
pub mod progress;
mod read;
mod schedule;
mod search;
mod settings;
mod sources;
mod spectrum;
mod stage;
pub mod tsne;

pub use spray_store::analysis::{
    group_name, manifest_path, read_all, samples_path, spectrum_path, AnalysisManifest,
};

pub use eigen::{EigenSolver, Eigenpairs};
pub use embed::{ClusterMethod, TsneDistance, TsneSettings};
pub use error::{AnalyzeError, Result};
pub use features::{Normalization, SignMode};
pub use graph::{EdgeWeight, KnnGraph, KnnTable, LaplacianKind, SparseSymmetric, Symmetrize};
pub use group::{
    analyze_group, analyze_group_observed, GroupAnalysis, GroupPoints, TSNE_INIT_EIGENVECTORS,
};
pub use in_memory::{analyze_maps, MapsInMemory};
pub use output::fingerprint;
pub use settings::{AnalysisSettings, Grouping, KnnSearch, RankCriterion};
pub use spectrum::eigengap_stats;
pub use stage::{run, AnalyzeJob, AnalyzeSummary};

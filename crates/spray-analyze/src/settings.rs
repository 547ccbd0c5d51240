//! The `[analysis]` table of a pipeline: every setting of the stage, with its default.

use crate::eigen::EigenSolver;
use crate::embed::{ClusterMethod, TsneSettings};
use crate::features::{Normalization, SignMode};
use crate::graph::{EdgeWeight, LaplacianKind, Symmetrize};

/// Which samples are analysed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Grouping {
    /// One analysis per explained class (SpRAy's usual mode).
    #[default]
    PerClass,
    /// All samples together.
    All,
}

/// How the kNN graph's neighbours are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KnnSearch {
    /// Exact up to `exact_knn_limit` points, approximate (NN-descent) above.
    #[default]
    Auto,
    /// Always exact (tiled GEMM; O(n²·d) time).
    Exact,
    /// Always NN-descent (`ann`).
    Approximate,
}

/// How classes are ranked (larger score = more suspicious).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RankCriterion {
    /// The default: the strongest `ClusterContrast` of the class — a cluster the kNN graph
    /// cuts off (1 − conductance) whose maps carry a different relevance mass than the rest
    /// (shift of the mean log mass in standard deviations). Chosen on the detection scenario
    /// suite (`tests/scenarios`, `benches/RESULTS.md`): −λ2 alone ranks a clean class whose
    /// objects sit in two places (λ2 = 0) above shortcut classes, and misses a thin frame.
    #[default]
    Contrast,
    /// −λ2. By Cheeger's inequality a small λ2 of L_sym means the class's kNN graph has a
    /// weak cut: two groups of explanations that are barely connected (λ2 = 0:
    /// disconnected). It is the order of thesis Fig. 6.5 (spray's default before 0.x).
    Lambda2,
    /// The largest gap λi+1 − λi for 2 ≤ i < max_clusters: clear structure beyond one
    /// cluster. Noisy when spectra rise smoothly (the largest small gap then wins by chance).
    Eigengap,
    /// The number of near-zero eigenvalues (ties: smaller λ2 first).
    NearZero,
}

/// The `[analysis]` table of a pipeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSettings {
    #[serde(default)]
    pub grouping: Grouping,
    /// Grid size g of the pooled maps (must be stored by the relevance stage, or derivable
    /// from its stored full map).
    #[serde(default = "default_grid")]
    pub grid: usize,
    /// Gaussian low-pass on the grid, σ in cells (0 = off).
    #[serde(default)]
    pub blur_sigma: f64,
    #[serde(default)]
    pub sign: SignMode,
    #[serde(default)]
    pub normalization: Normalization,
    /// Neighbours per vertex; default ⌈ln n⌉.
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub knn: KnnSearch,
    /// Largest group searched exactly under `knn = "auto"`.
    #[serde(default = "default_exact_knn_limit")]
    pub exact_knn_limit: usize,
    #[serde(default)]
    pub weight: EdgeWeight,
    #[serde(default)]
    pub symmetrize: Symmetrize,
    #[serde(default)]
    pub laplacian: LaplacianKind,
    /// Eigenvalues to compute.
    #[serde(default = "default_eigenvalues")]
    pub eigenvalues: usize,
    #[serde(default)]
    pub solver: EigenSolver,
    /// Largest n solved densely under `solver = "auto"`.
    #[serde(default = "default_dense_limit")]
    pub dense_limit: usize,
    /// Eigenvalues below this count as zero.
    #[serde(default = "default_near_zero")]
    pub near_zero: f64,
    #[serde(default)]
    pub rank_by: RankCriterion,
    #[serde(default)]
    pub cluster_method: ClusterMethod,
    /// Fixed number of clusters; default: from the eigengap, at least `min_clusters`.
    #[serde(default)]
    pub clusters: Option<usize>,
    #[serde(default = "default_min_clusters")]
    pub min_clusters: usize,
    #[serde(default = "default_max_clusters")]
    pub max_clusters: usize,
    #[serde(default = "default_restarts")]
    pub kmeans_restarts: usize,
    #[serde(default = "default_dbscan_eps")]
    pub dbscan_eps: f64,
    #[serde(default)]
    pub tsne: TsneSettings,
    /// Also analyse the downsized inputs (thesis Fig 6.3's baseline) when stored.
    #[serde(default = "yes")]
    pub image_baseline: bool,
    /// Also analyse each concept layer's per-channel relevance (the relevance dataset's
    /// `concept` column) as a space of its own, when stored.
    #[serde(default = "yes")]
    pub concept_spaces: bool,
    /// Also analyse each image's global colour statistics (the relevance dataset's
    /// `image_colour` column, z-scored within the group) as the `colour` space, when stored:
    /// the one place a colour shortcut can show (benches/RESULTS.md, the cast scenario).
    #[serde(default = "yes")]
    pub colour_space: bool,
    /// Also analyse how each file was compressed (its JPEG block statistics and the quality it
    /// was last saved at: the relevance dataset's `image_compression` column, z-scored within
    /// the group) as the `compression` space, when stored: where images compressed harder than
    /// the rest of their class are found (a recompression, or a source saving at a lower
    /// quality, that no heatmap, concept or colour group isolated, benches/RESULTS.md).
    #[serde(default = "yes")]
    pub compression_space: bool,
    #[serde(default)]
    pub seed: u64,
}

fn default_grid() -> usize {
    20
}
/// Exact up to 100,000 points: 40 s at d = 400 on 2 cores (benches/RESULTS.md), and the exact
/// search's cost grows as n² while NN-descent's grows as n.
fn default_exact_knn_limit() -> usize {
    100_000
}
fn default_eigenvalues() -> usize {
    20
}

fn default_dense_limit() -> usize {
    500
}
fn default_near_zero() -> f64 {
    1e-3
}
fn default_min_clusters() -> usize {
    2
}
fn default_max_clusters() -> usize {
    10
}
fn default_restarts() -> usize {
    10
}
fn default_dbscan_eps() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            grouping: Grouping::PerClass,
            grid: default_grid(),
            blur_sigma: 0.0,
            sign: SignMode::Signed,
            normalization: Normalization::L1,
            k: None,
            knn: KnnSearch::Auto,
            exact_knn_limit: default_exact_knn_limit(),
            weight: EdgeWeight::Binary,
            symmetrize: Symmetrize::Max,
            laplacian: LaplacianKind::Symmetric,
            eigenvalues: default_eigenvalues(),
            solver: EigenSolver::Auto,
            dense_limit: default_dense_limit(),
            near_zero: default_near_zero(),
            rank_by: RankCriterion::default(),
            cluster_method: ClusterMethod::Kmeans,
            clusters: None,
            min_clusters: default_min_clusters(),
            max_clusters: default_max_clusters(),
            kmeans_restarts: default_restarts(),
            dbscan_eps: default_dbscan_eps(),
            tsne: TsneSettings::default(),
            image_baseline: true,
            concept_spaces: true,
            colour_space: true,
            compression_space: true,
            seed: 0,
        }
    }
}

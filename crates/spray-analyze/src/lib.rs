//! Stage 2: Spectral Relevance Analysis (thesis Ch. 6, Appendix E, Algorithm 3).
//!
//! Per group (each explained class, or all samples): prepare the pooled maps, build the kNN
//! graph (k = ⌈ln n⌉, binary, symmetrised by max), form L_sym, take its smallest eigenpairs,
//! read the eigengap, cluster the spectral embedding and embed the samples in 2-D with t-SNE.
//! The same is done on the downsized inputs (the image-space baseline) when they are stored.

pub mod ann;
pub mod chebyshev;
pub mod contrast;
pub mod eigen;
pub mod embed;
pub mod features;
pub mod graph;
pub mod lanczos;
pub mod progress;
pub mod tsne;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray16::Array2;
pub use spray_store::analysis::{
    group_name, manifest_path, read_all, samples_path, spectrum_path, AnalysisManifest,
};
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::relevance::{self as rel, ReadOptions};
use spray_store::{Fingerprint, Shard};

pub use eigen::{EigenSolver, Eigenpairs};
pub use embed::{ClusterMethod, TsneDistance, TsneSettings};
pub use features::{Normalization, SignMode};
pub use graph::{EdgeWeight, KnnGraph, KnnTable, LaplacianKind, SparseSymmetric, Symmetrize};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error("eigendecomposition: {0}")]
    Eigen(String),
    #[error("clustering: {0}")]
    Cluster(String),
    #[error("{0}")]
    Config(String),
    /// Features with NaN or ∞: analysing them would give a meaningless spectrum.
    #[error("{0}")]
    NonFinite(String),
}

pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;

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
/// Eigenvectors whose principal axes start t-SNE (see `embed::tsne_init`).
pub const TSNE_INIT_EIGENVECTORS: usize = 10;

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
            seed: 0,
        }
    }
}

/// The points of one group in one feature space.
pub struct GroupPoints {
    pub class_index: i32,
    pub class_name: String,
    pub space: spray_store::FeatureSpace,
    /// (image_index, sample_id, path) per row.
    pub ids: Vec<(i64, String, String)>,
    pub features: Array2<f32>,
    /// Each row's L1 mass before normalisation (`contrast::relevance_mass`); `None`: the L1
    /// mass of the feature row itself.
    pub mass: Option<Vec<f64>>,
}

/// Everything computed for one group, before it is written.
pub struct GroupAnalysis {
    pub spectrum: ClassSpectrum,
    pub samples: Vec<SampleEmbedding>,
    pub eigenpairs: Eigenpairs,
}

/// Eigengap statistics of an ascending spectrum: (largest gap for i ≥ 2, its 1-based index,
/// clusters estimated from the largest gap overall).
pub fn eigengap_stats(values: &[f64], max_clusters: usize) -> (f64, i32, i32) {
    let gaps = eigen::gaps(values);
    let mut best = (0.0, 0i32);
    for (i, &g) in gaps.iter().enumerate().skip(1) {
        if i < max_clusters && g > best.0 {
            best = (g, i as i32 + 1);
        }
    }
    let mut est = (f64::NEG_INFINITY, 1i32);
    for (i, &g) in gaps.iter().enumerate() {
        if i < max_clusters && g > est.0 {
            est = (g, i as i32 + 1);
        }
    }
    (best.0, best.1, est.1)
}

/// SpRAy on one group of points.
pub fn analyze_group(points: &GroupPoints, settings: &AnalysisSettings) -> Result<GroupAnalysis> {
    analyze_group_observed(points, settings, &progress::Silent)
}

/// [`analyze_group`], reporting each step to `progress`.
pub fn analyze_group_observed(
    points: &GroupPoints,
    settings: &AnalysisSettings,
    progress: &dyn progress::StepObserver,
) -> Result<GroupAnalysis> {
    check_finite(points)?;
    let n = points.features.nrows();
    let seed = settings.seed ^ (points.class_index as i64 as u64).wrapping_mul(0x9E37_79B9);
    let k = settings.k.unwrap_or_else(|| graph::default_k(n));
    // One neighbour search for both the graph (k) and Barnes–Hut t-SNE (3·perplexity).
    let tsne_k =
        (n > settings.tsne.exact_limit).then(|| (3.0 * settings.tsne.perplexity).ceil() as usize);
    let search_k = k.max(tsne_k.unwrap_or(0));
    let approximate = match settings.knn {
        KnnSearch::Auto => n > settings.exact_knn_limit,
        KnnSearch::Exact => false,
        KnnSearch::Approximate => true,
    };
    let wide = if approximate {
        ann::knn_observed(
            points.features.view(),
            search_k,
            &ann::NnDescentSettings {
                seed,
                ..ann::NnDescentSettings::default()
            },
            progress,
        )
    } else {
        graph::knn_observed(points.features.view(), search_k, progress)
    };
    let graph = KnnGraph::build(&wide.truncated(k), settings.weight, settings.symmetrize);
    let laplacian = graph.laplacian(settings.laplacian);
    progress.start("eigenpairs", 0);
    let pairs = eigen::smallest(
        &laplacian,
        settings.eigenvalues,
        settings.solver,
        settings.dense_limit,
        seed,
    )?;
    // The Laplacian is a second copy of the graph's sparsity (0.4 GB at 1.28M maps) that
    // nothing after the eigenpairs reads.
    drop(laplacian);
    let values = pairs.values.clone();
    let gaps = eigen::gaps(&values);
    let (largest_gap, largest_gap_index, by_gap) = eigengap_stats(&values, settings.max_clusters);
    let near_zero = values.iter().filter(|&&v| v < settings.near_zero).count() as i32;
    // Eigenvalues at zero count disjoint components (thesis §6.2): when the graph falls
    // apart, that count is the number of clusters; otherwise the eigengap decides.
    let estimated = if near_zero >= 2 {
        near_zero.min(settings.max_clusters as i32)
    } else {
        by_gap
    };
    let lambda2 = values.get(1).copied().unwrap_or(0.0);
    let clusters = settings
        .clusters
        .unwrap_or_else(|| (estimated as usize).max(settings.min_clusters))
        .min(pairs.vectors.ncols().max(1))
        .min(n.max(1));

    // The spectral embedding: NJW rows for L_sym, D^-½ v (Shi–Malik) for L_rw.
    let embedding = match settings.laplacian {
        LaplacianKind::Symmetric => embed::spectral_embedding(pairs.vectors.view(), clusters),
        LaplacianKind::Unnormalized => pairs
            .vectors
            .slice(ndarray16::s![.., ..clusters.min(pairs.vectors.ncols())])
            .to_owned(),
        LaplacianKind::RandomWalk => {
            let deg = graph.degrees();
            let mut v = pairs
                .vectors
                .slice(ndarray16::s![.., ..clusters.min(pairs.vectors.ncols())])
                .to_owned();
            for (mut row, d) in v.rows_mut().into_iter().zip(deg) {
                if d > 0.0 {
                    row.mapv_inplace(|x| x / d.sqrt());
                }
            }
            v
        }
    };
    progress.start("clustering", 0);
    let labels = embed::cluster(
        &embedding,
        clusters,
        settings.cluster_method,
        settings.kmeans_restarts,
        seed,
        settings.dbscan_eps,
    )?;
    let central = embed::centrality(&embedding, &labels);
    // The best two-way split as a second, coarser grouping (spray_store::verify::ClusterLevel):
    // the clustering when it has two clusters, else k-means with k = 2 on the NJW rows of the
    // first two eigenvectors (the relaxed normalised cut).
    let split = if clusters == 2 || n < 2 || pairs.vectors.ncols() < 2 {
        labels.clone()
    } else {
        embed::two_way_split(pairs.vectors.view(), settings.kmeans_restarts, seed)?
    };
    let mass = points.mass.clone().unwrap_or_else(|| {
        points
            .features
            .rows()
            .into_iter()
            .map(contrast::relevance_mass)
            .collect()
    });
    let strongest = contrast::strongest(&graph, &labels, &mass);
    let score = match settings.rank_by {
        RankCriterion::Contrast => strongest.score(),
        RankCriterion::Eigengap => largest_gap,
        RankCriterion::Lambda2 => -lambda2,
        RankCriterion::NearZero => near_zero as f64 - lambda2.min(1.0) * 1e-3,
    };

    // t-SNE from the spectral layout: deterministic and already cluster-aware.
    let init = embed::tsne_init(pairs.vectors.view(), TSNE_INIT_EIGENVECTORS);
    // The search's own table when t-SNE wants all of it (the usual case: 3·perplexity ≥ k),
    // so the largest table is not copied.
    let tsne_table = tsne_k.map(|t| {
        if t >= wide.k {
            std::borrow::Cow::Borrowed(&wide)
        } else {
            std::borrow::Cow::Owned(wide.truncated(t))
        }
    });
    // Concept and colour spaces are laid out by their spectral start alone: t-SNE is most of
    // a group's time (0.7 of 0.8 s at n = 1,300) and the report draws the relevance space's.
    let coords = if matches!(
        points.space,
        spray_store::FeatureSpace::Concept(_) | spray_store::FeatureSpace::Colour
    ) {
        init.iter().map(|p| [p[0] as f32, p[1] as f32]).collect()
    } else {
        embed::tsne_observed(
            points.features.view(),
            &graph,
            tsne_table.as_deref(),
            &init,
            &settings.tsne,
            progress,
        )
    };

    let samples = (0..n)
        .map(|i| SampleEmbedding {
            class_index: points.class_index,
            space: points.space,
            image_index: points.ids[i].0,
            sample_id: points.ids[i].1.clone(),
            path: points.ids[i].2.clone(),
            cluster: labels[i],
            tsne_x: coords[i][0],
            tsne_y: coords[i][1],
            spectral: embedding.row(i).iter().map(|&v| v as f32).collect(),
            centrality: central[i],
            split: split[i],
        })
        .collect();
    Ok(GroupAnalysis {
        spectrum: ClassSpectrum {
            class_index: points.class_index,
            class_name: points.class_name.clone(),
            space: points.space,
            n: n as i64,
            knn_k: graph.k as i32,
            eigenvalues: values,
            gaps,
            largest_gap,
            largest_gap_index,
            estimated_clusters: estimated,
            clusters: clusters as i32,
            near_zero,
            lambda2,
            score,
            contrast: strongest,
        },
        samples,
        eigenpairs: pairs,
    })
}

pub struct AnalyzeJob<'a> {
    /// `<out>/relevance`.
    pub relevance_dir: PathBuf,
    /// `<out>/analysis`.
    pub dir: PathBuf,
    pub settings: &'a AnalysisSettings,
    /// Groups g with g mod count = index.
    pub shard: Shard,
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AnalyzeSummary {
    pub groups_total: usize,
    pub groups_done_before: usize,
    pub groups_written: usize,
    pub samples: usize,
    pub seconds: f64,
}

fn io(path: &Path, e: std::io::Error) -> AnalyzeError {
    AnalyzeError::Store(spray_store::StoreError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// The analysis's fingerprint: the relevance dataset's and the settings.
pub fn fingerprint(relevance_fingerprint: &str, settings: &AnalysisSettings) -> String {
    Fingerprint::new()
        .bytes(relevance_fingerprint)
        .bytes(format!(
            "analysis-schema-{}",
            spray_store::analysis::SCHEMA_VERSION
        ))
        .json(settings)
        .spray_version()
        .finish()
}

/// Run the analyze stage over a finished relevance dataset.
pub fn run(job: &AnalyzeJob<'_>) -> Result<AnalyzeSummary> {
    let started = Instant::now();
    let settings = job.settings;
    let (manifest, parts) = rel::finished_parts(&job.relevance_dir)?;
    let g = settings.grid;
    if g == 0 {
        return Err(AnalyzeError::Config(
            "analysis.grid must be positive".into(),
        ));
    }
    let from_map = !manifest.layout.grids.contains(&g);
    if from_map && !manifest.layout.store_map {
        return Err(AnalyzeError::Config(format!(
            "the relevance dataset has grids {:?} and no full map; add {g} to relevance.grids",
            manifest.layout.grids
        )));
    }
    let images = settings.image_baseline && manifest.layout.store_images && !from_map;
    let colour_space = settings.colour_space && manifest.layout.colour_stats;
    let mut concept_ranges = if settings.concept_spaces {
        manifest.layout.concept_ranges()
    } else {
        Vec::new()
    };
    // The space's label holds the layer's index in a byte.
    concept_ranges.truncate(usize::from(u8::MAX) + 1);
    let options = ReadOptions {
        grids: if from_map { Vec::new() } else { vec![g] },
        map: from_map,
        images,
        // Read per group instead (`group_concepts`): at ImageNet size the column of every
        // row would be 1.28M × ΣC floats (15.7 GB for ResNet-50's default layers).
        concept: false,
        // Six values a row (31 MB at 1.28M rows): read up front.
        colour: colour_space,
    };
    // Keep only what the analysis reads, prepared as each part is read: at ImageNet size
    // (1.3M maps) a full RelevanceRecord per map — names, labels, a stored map of up to
    // 64×64 — would hold several times the features in memory, and a pooled grid per row
    // beside the group's matrix would be a second copy of the features (2 GB at d = 400).
    let d = g * g;
    let mut rows: Vec<AnalysisRow> = Vec::new();
    let mut prepared: Vec<f32> = Vec::new();
    for (part_index, part) in parts.iter().enumerate() {
        for (row_in_part, r) in rel::read_part(part, &options)?.into_iter().enumerate() {
            let grid = if from_map {
                let Some((mh, mw, map)) = r.map.as_ref() else {
                    return Err(AnalyzeError::Config(format!(
                        "{}: a row without the stored map the analysis needs",
                        part.display()
                    )));
                };
                rel::sum_pool(map, *mh as usize, *mw as usize, g, g)
            } else {
                r.grids.into_iter().next().unwrap_or_default()
            };
            if grid.len() != d {
                return Err(AnalyzeError::Config(format!(
                    "sample '{}' has a {}-cell relevance grid, expected {g} x {g}",
                    r.sample_id,
                    grid.len()
                )));
            }
            prepared.extend(features::prepare(
                &grid,
                g,
                settings.blur_sigma,
                settings.sign,
                settings.normalization,
            ));
            rows.push(AnalysisRow {
                image_index: r.image_index,
                class_index: r.class_index,
                sample_id: r.sample_id,
                path: r.path,
                mass: contrast::relevance_mass(&grid),
                read_at: rows.len(),
                image_grid: std::sync::Mutex::new(r.image_grids.into_iter().next()),
                colour: r.colour,
                source: (part_index as u32, row_in_part as u32),
            });
        }
    }
    rows.shrink_to_fit();
    rows.sort_by_key(|a| (a.image_index, a.class_index));
    if rows.is_empty() {
        return Err(AnalyzeError::Config(format!(
            "{} holds no relevance maps: every input was skipped (the reasons are in its \
             errors-*.parquet files and in `spray relevance`'s summary)",
            job.relevance_dir.display()
        )));
    }
    // Row i of the prepared matrix is rows[i]'s, whatever order the parts were read in.
    let order: Vec<usize> = rows.iter().map(|r| r.read_at).collect();
    features::gather_rows_in_place(&mut prepared, d, &order);
    prepared.shrink_to_fit();
    let prepared = Array2::from_shape_vec((rows.len(), d), prepared)
        .map_err(|e| AnalyzeError::Config(format!("prepared features: {e}")))?;
    // Behind a lock so that a group of every row (grouping = "all") can take the matrix
    // itself instead of a copy; other groups copy their rows out of it.
    let prepared = std::sync::Mutex::new(Some(prepared));

    let mut by_group: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
    for (i, r) in rows.iter().enumerate() {
        let key = match settings.grouping {
            Grouping::PerClass => r.class_index,
            Grouping::All => -1,
        };
        by_group.entry(key).or_default().push(i);
    }
    let groups: Vec<i32> = by_group.keys().copied().collect();

    let fingerprint = fingerprint(&manifest.fingerprint, settings);
    std::fs::create_dir_all(&job.dir).map_err(|e| io(&job.dir, e))?;
    // The writer's own guard (the pipeline clears a stale folder first).
    if spray_store::stage::analysis_state(&job.dir, &fingerprint) == spray_store::StageState::Stale
    {
        return Err(AnalyzeError::Config(format!(
            "{} holds an analysis of other inputs or settings; use another folder or rerun with --force analyze",
            job.dir.display()
        )));
    }
    let analysis_manifest = AnalysisManifest {
        fingerprint,
        groups: groups.clone(),
    };
    spray_store::write_atomically(
        &manifest_path(&job.dir),
        &serde_json::to_vec_pretty(&analysis_manifest).unwrap_or_default(),
    )?;

    let mine: Vec<(usize, i32)> = groups
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| job.shard.owns(*i))
        .collect();
    let mut summary = AnalyzeSummary {
        groups_total: mine.len(),
        ..Default::default()
    };
    let bars = indicatif::MultiProgress::new();
    let bar = if job.progress {
        let bar = bars.add(indicatif::ProgressBar::new(mine.len() as u64));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} analyze [{elapsed_precise}] {bar:30} {pos}/{len} groups  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Groups are independent: analyse them side by side (t-SNE runs on one thread per group
    // for determinism, so this is what keeps all cores busy on many-class datasets). Each
    // group's files depend only on its own rows, so the order of completion does not matter.
    let todo: Vec<i32> = mine
        .iter()
        .map(|&(_, class)| class)
        .filter(|&class| !spectrum_path(&job.dir, class).is_file())
        .collect();
    summary.groups_done_before = mine.len() - todo.len();
    bar.inc(summary.groups_done_before as u64);
    // One group left (grouping = "all", or a single class): its steps take the time, so they
    // get a bar of their own. With several groups in flight, the groups bar says enough.
    let steps: Box<dyn progress::StepObserver> = if job.progress && todo.len() == 1 {
        Box::new(progress::StepBar::new(
            bars.add(indicatif::ProgressBar::new(0)),
        ))
    } else {
        Box::new(progress::Silent)
    };
    let analyse = |&class: &i32| -> Result<usize> {
        let members = &by_group[&class];
        let name = if class < 0 {
            "all samples".to_string()
        } else {
            manifest
                .classes
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {class}"))
        };
        bar.set_message(name.clone());
        let ids: Vec<(i64, String, String)> = members
            .iter()
            .map(|&i| {
                (
                    rows[i].image_index,
                    rows[i].sample_id.clone(),
                    rows[i].path.clone(),
                )
            })
            .collect();
        let mass: Vec<f64> = members.iter().map(|&i| rows[i].mass).collect();
        let relevance_features = {
            let mut whole = graph::locked(&prepared);
            if members.len() == rows.len() {
                whole.take()
            } else {
                whole
                    .as_ref()
                    .map(|m| m.select(ndarray16::Axis(0), members))
            }
        }
        .ok_or_else(|| {
            AnalyzeError::Config("the prepared features were already handed out".into())
        })?;
        let mut spectra = Vec::new();
        let mut samples = Vec::new();
        let relevance = analyze_group_observed(
            &GroupPoints {
                class_index: class,
                class_name: name.clone(),
                space: spray_store::FeatureSpace::Relevance,
                ids: ids.clone(),
                features: relevance_features,
                mass: Some(mass),
            },
            settings,
            steps.as_ref(),
        )?;
        spectra.push(relevance.spectrum);
        samples.extend(relevance.samples);
        if images {
            let image_features: Vec<Vec<f32>> = members
                .iter()
                .map(|&i| {
                    graph::locked(&rows[i].image_grid)
                        .take()
                        .unwrap_or_default()
                })
                .collect();
            let baseline = analyze_group_observed(
                &GroupPoints {
                    class_index: class,
                    class_name: name.clone(),
                    space: spray_store::FeatureSpace::Image,
                    ids: ids.clone(),
                    features: to_matrix(&image_features),
                    mass: None,
                },
                settings,
                steps.as_ref(),
            )?;
            spectra.push(baseline.spectrum);
            samples.extend(baseline.samples);
        }
        if !concept_ranges.is_empty() {
            let sources: Vec<(u32, u32)> = members.iter().map(|&i| rows[i].source).collect();
            let concepts = group_concepts(&parts, &sources)?;
            for (layer, range) in concept_ranges.iter().enumerate() {
                let (features, mass) = features::concept_features(&concepts, range.clone())
                    .map_err(|e| AnalyzeError::Config(format!("{name}: {e}")))?;
                let concept = analyze_group_observed(
                    &GroupPoints {
                        class_index: class,
                        class_name: name.clone(),
                        space: spray_store::FeatureSpace::Concept(layer as u8),
                        ids: ids.clone(),
                        features,
                        mass: Some(mass),
                    },
                    settings,
                    steps.as_ref(),
                )?;
                spectra.push(concept.spectrum);
                samples.extend(concept.samples);
            }
        }
        if colour_space {
            let colours: Option<Vec<&[f32]>> =
                members.iter().map(|&i| rows[i].colour.as_deref()).collect();
            let colours = colours.ok_or_else(|| {
                AnalyzeError::Config(format!("{name}: a row without its colour statistics"))
            })?;
            let colour = analyze_group_observed(
                &GroupPoints {
                    class_index: class,
                    class_name: name.clone(),
                    space: spray_store::FeatureSpace::Colour,
                    ids: ids.clone(),
                    features: features::colour_features(&colours),
                    mass: None,
                },
                settings,
                steps.as_ref(),
            )?;
            spectra.push(colour.spectrum);
            samples.extend(colour.samples);
        }
        spray_store::analysis::write_group(
            &spectrum_path(&job.dir, class),
            &samples_path(&job.dir, class),
            &spectra,
            &samples,
        )?;
        bar.inc(1);
        Ok(members.len())
    };
    // One group more than cores: it keeps the cores busy while a group is in its serial parts
    // or writing (200 × 1,300 maps: 113 s with 3 in flight, 125 s with 2, on 2 cores).
    let done = side_by_side(&todo, rayon::current_num_threads() + 1, analyse)?;
    summary.samples = done.iter().sum();
    summary.groups_written = done.len();
    bar.finish_and_clear();
    let _ = bars.clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Run `work` on every item, `threads` at a time, each thread taking the next item when done;
/// the results in item order. The first error stops the others from starting new items.
///
/// Why plain threads and not a rayon `par_iter`: the work itself uses rayon (the kNN blocks,
/// t-SNE's own pool), and a rayon worker that waits for inner work steals the *outer* jobs —
/// other groups — and starts them on its stack. With 1,000 groups that nested dozens of
/// half-done groups per thread (measured with heaptrack: every sample's prepared features alive
/// at the peak; 7.0 GB RSS for 1,000 × 1,300 maps). A thread outside the pool blocks instead,
/// so at most `threads` groups are in flight (200 classes × 1,300 maps: peak RSS 1,668 → 524
/// MiB).
fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = threads.clamp(1, items.len().max(1));
    let per_thread: Vec<Result<Vec<(usize, R)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match work(item) {
                            Ok(r) => out.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for r in per_thread {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// One map as the analysis keeps it (see `run`).
struct AnalysisRow {
    image_index: i64,
    class_index: i32,
    sample_id: String,
    path: String,
    /// Σ|R| of the pooled grid (before any normalisation), for the mass contrast.
    mass: f64,
    /// Position in reading order (the prepared matrix's row before it is put in row order).
    read_at: usize,
    /// The pooled input (3×g×g) for the image-space baseline, when read; taken (left empty)
    /// when its group is analysed. Behind a lock because groups are analysed side by side.
    image_grid: std::sync::Mutex<Option<Vec<f32>>>,
    /// The input's colour statistics (`relevance::colour_stats`), when read.
    colour: Option<Vec<f32>>,
    /// (part, row in part) of the row in the relevance dataset: where its group's concept
    /// values are read from.
    source: (u32, u32),
}

/// The concept column of a group's rows, in `sources` order, read from the parts that hold
/// them (one part at a time), so that only the groups in flight hold concept values.
fn group_concepts(parts: &[std::path::PathBuf], sources: &[(u32, u32)]) -> Result<Vec<Vec<f32>>> {
    let mut out = vec![Vec::new(); sources.len()];
    let mut by_part: std::collections::BTreeMap<u32, Vec<(u32, usize)>> = Default::default();
    for (k, &(part, row)) in sources.iter().enumerate() {
        by_part.entry(part).or_default().push((row, k));
    }
    let options = ReadOptions {
        concept: true,
        ..Default::default()
    };
    for (part, wanted) in by_part {
        let path = &parts[part as usize];
        let mut records = rel::read_part(path, &options)?;
        for (row, k) in wanted {
            let concept = records
                .get_mut(row as usize)
                .and_then(|r| r.concept.take())
                .ok_or_else(|| {
                    AnalyzeError::Config(format!(
                        "{}: row {row} has no concept column (the part changed since it was read?)",
                        path.display()
                    ))
                })?;
            out[k] = concept;
        }
    }
    Ok(out)
}

/// Refuse features with NaN or ∞, naming the samples: one such row makes every distance to it
/// NaN, and the eigensolver then returns a spectrum that looks like a result but is not.
fn check_finite(points: &GroupPoints) -> Result<()> {
    let bad: Vec<usize> = points
        .features
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad
        .iter()
        .take(5)
        .map(|&i| {
            points
                .ids
                .get(i)
                .map_or_else(|| format!("row {i}"), |id| format!("'{}'", id.1))
        })
        .collect();
    Err(AnalyzeError::NonFinite(format!(
        "{} ({} space): {} of {} samples have NaN or infinite features ({}{}); \
         refusing to analyse them",
        points.class_name,
        points.space,
        bad.len(),
        points.features.nrows(),
        shown.join(", "),
        if bad.len() > shown.len() { ", …" } else { "" }
    )))
}

fn to_matrix(rows: &[Vec<f32>]) -> Array2<f32> {
    let d = rows.first().map(|r| r.len()).unwrap_or(0);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Array2::from_shape_vec((rows.len(), d), flat).unwrap_or_else(|_| Array2::zeros((0, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_keeps_item_order_and_stops_at_an_error() {
        let items: Vec<u64> = (0..50).collect();
        let squares = side_by_side(&items, 3, |&v| Ok(v * v)).unwrap();
        assert_eq!(squares, items.iter().map(|v| v * v).collect::<Vec<_>>());
        let started = std::sync::atomic::AtomicUsize::new(0);
        let err = side_by_side(&items, 2, |&v| {
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if v == 3 {
                Err(AnalyzeError::Config("item 3".into()))
            } else {
                Ok(v)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("item 3"));
        // the error stopped the threads from taking (most of) the remaining items
        assert!(started.load(std::sync::atomic::Ordering::Relaxed) < 10);
        assert!(side_by_side(&[] as &[u64], 4, |&v| Ok(v))
            .unwrap()
            .is_empty());
    }
}

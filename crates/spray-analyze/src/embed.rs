//! Spectral clustering (Ng–Jordan–Weiss) and the t-SNE embedding.

use linfa::traits::{Fit, Predict, Transformer};
use linfa::DatasetBase;
use ndarray16::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use crate::error::AnalyzeError;
use crate::graph::{KnnGraph, KnnTable, LaplacianKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMethod {
    /// k-means on the row-normalised spectral embedding (Ng, Jordan & Weiss).
    #[default]
    Kmeans,
    /// DBSCAN on the spectral embedding (clusters found by density; noise gets −1).
    Dbscan,
    /// Agglomerative (Ward linkage) on the spectral embedding, cut at k clusters.
    Agglomerative,
}

/// The spectral embedding the clusters are found in, from the first `clusters` eigenvectors
/// of the graph's Laplacian of `kind`: the NJW rows for L_sym, the eigenvectors themselves for
/// L, D^-½ v (Shi–Malik) for L_rw.
pub fn laplacian_embedding(
    kind: LaplacianKind,
    vectors: ArrayView2<'_, f64>,
    graph: &KnnGraph,
    clusters: usize,
) -> Array2<f64> {
    match kind {
        LaplacianKind::Symmetric => spectral_embedding(vectors, clusters),
        LaplacianKind::Unnormalized => vectors
            .slice(ndarray16::s![.., ..clusters.min(vectors.ncols())])
            .to_owned(),
        LaplacianKind::RandomWalk => {
            let deg = graph.degrees();
            let mut v = vectors
                .slice(ndarray16::s![.., ..clusters.min(vectors.ncols())])
                .to_owned();
            for (mut row, d) in v.rows_mut().into_iter().zip(deg) {
                if d > 0.0 {
                    row.mapv_inplace(|x| x / d.sqrt());
                }
            }
            v
        }
    }
}

/// Rows of the first k eigenvectors, each scaled to unit length.
pub fn spectral_embedding(vectors: ArrayView2<'_, f64>, k: usize) -> Array2<f64> {
    let k = k.min(vectors.ncols()).max(1);
    let mut u = vectors.slice(ndarray16::s![.., ..k]).to_owned();
    for mut row in u.axis_iter_mut(Axis(0)) {
        let norm = row.dot(&row).sqrt();
        if norm > 1e-12 {
            row.mapv_inplace(|v| v / norm);
        }
    }
    u
}

pub fn cluster(
    embedding: &Array2<f64>,
    k: usize,
    method: ClusterMethod,
    restarts: usize,
    seed: u64,
    dbscan_eps: f64,
) -> Result<Vec<i32>, AnalyzeError> {
    let n = embedding.nrows();
    if n == 0 {
        return Ok(Vec::new());
    }
    if k <= 1 || n <= k {
        return Ok(if n <= k {
            (0..n as i32).collect()
        } else {
            vec![0; n]
        });
    }
    match method {
        ClusterMethod::Kmeans => {
            let data = DatasetBase::from(embedding.clone());
            let model =
                linfa_clustering::KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
                    .n_runs(restarts.max(1))
                    .tolerance(1e-8)
                    .max_n_iterations(500)
                    .fit(&data)
                    .map_err(|e| AnalyzeError::Cluster(format!("k-means: {e}")))?;
            let labels: Array1<usize> = model.predict(embedding);
            Ok(relabel_by_size(labels.iter().map(|&l| l as i32).collect()))
        }
        ClusterMethod::Dbscan => {
            let labels = linfa_clustering::Dbscan::params(3)
                .tolerance(dbscan_eps)
                .transform(embedding)
                .map_err(|e| AnalyzeError::Cluster(format!("DBSCAN: {e}")))?;
            Ok(relabel_by_size(
                labels
                    .iter()
                    .map(|l| l.map(|v| v as i32).unwrap_or(-1))
                    .collect(),
            ))
        }
        ClusterMethod::Agglomerative => {
            let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
            for i in 0..n {
                for j in i + 1..n {
                    let d = &embedding.row(i) - &embedding.row(j);
                    condensed.push(d.dot(&d).sqrt());
                }
            }
            let dendrogram = kodama::linkage(&mut condensed, n, kodama::Method::Ward);
            // Union clusters step by step until k remain.
            let mut parent: Vec<usize> = (0..2 * n).collect();
            fn find(p: &mut [usize], x: usize) -> usize {
                let mut r = x;
                while p[r] != r {
                    r = p[r];
                }
                let mut c = x;
                while p[c] != r {
                    let next = p[c];
                    p[c] = r;
                    c = next;
                }
                r
            }
            for (step, s) in dendrogram.steps().iter().enumerate() {
                if step >= n - k {
                    break;
                }
                let new = n + step;
                let a = find(&mut parent, s.cluster1);
                let b = find(&mut parent, s.cluster2);
                parent[a] = new;
                parent[b] = new;
            }
            let roots: Vec<usize> = (0..n).map(|i| find(&mut parent, i)).collect();
            let mut ids: Vec<usize> = roots.clone();
            ids.sort_unstable();
            ids.dedup();
            Ok(relabel_by_size(
                roots
                    .iter()
                    .map(|r| ids.binary_search(r).unwrap_or(0) as i32)
                    .collect(),
            ))
        }
    }
}

/// Number clusters 0, 1, ... by decreasing size (ties: by first member), noise (−1) kept:
/// labels then mean the same thing run to run.
fn relabel_by_size(labels: Vec<i32>) -> Vec<i32> {
    let mut stats: std::collections::BTreeMap<i32, (usize, usize)> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        if l < 0 {
            continue;
        }
        let e = stats.entry(l).or_insert((0, i));
        e.0 += 1;
    }
    let mut order: Vec<(i32, usize, usize)> =
        stats.into_iter().map(|(l, (c, f))| (l, c, f)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let map: std::collections::HashMap<i32, i32> = order
        .iter()
        .enumerate()
        .map(|(new, (old, _, _))| (*old, new as i32))
        .collect();
    labels
        .into_iter()
        .map(|l| if l < 0 { -1 } else { map[&l] })
        .collect()
}

/// The best two-way split of a group: k-means with k = 2 on the NJW rows of the first two
/// eigenvectors (the relaxed normalised cut); all in one side when there are fewer than two
/// points or eigenvectors.
pub fn two_way_split(
    vectors: ArrayView2<'_, f64>,
    restarts: usize,
    seed: u64,
) -> Result<Vec<i32>, AnalyzeError> {
    if vectors.nrows() < 2 || vectors.ncols() < 2 {
        return Ok(vec![0; vectors.nrows()]);
    }
    cluster(
        &spectral_embedding(vectors, 2),
        2,
        ClusterMethod::Kmeans,
        restarts,
        seed,
        0.0,
    )
}

/// Distance to the centre of one's cluster in `embedding` (small = typical member).
pub fn centrality(embedding: &Array2<f64>, labels: &[i32]) -> Vec<f32> {
    let mut sums: std::collections::HashMap<i32, (Array1<f64>, usize)> = Default::default();
    for (row, &l) in embedding.axis_iter(Axis(0)).zip(labels) {
        let e = sums
            .entry(l)
            .or_insert_with(|| (Array1::zeros(embedding.ncols()), 0));
        e.0 += &row;
        e.1 += 1;
    }
    embedding
        .axis_iter(Axis(0))
        .zip(labels)
        .map(|(row, l)| {
            let (sum, count) = &sums[l];
            let d = &row - &(sum / *count as f64);
            d.dot(&d).sqrt() as f32
        })
        .collect()
}

/// What t-SNE measures distance on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TsneDistance {
    /// 1 / (W + ε) from the affinity matrix (thesis §6.2): neighbours are close, everything
    /// else equally far.
    #[default]
    Affinity,
    /// Euclidean distance between the prepared maps.
    Euclidean,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsneSettings {
    #[serde(default = "default_perplexity")]
    pub perplexity: f64,
    #[serde(default = "default_exaggeration")]
    pub early_exaggeration: f64,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default)]
    pub distance: TsneDistance,
    /// Above this many points, Barnes–Hut on a kNN table instead of exact t-SNE.
    #[serde(default = "default_exact_limit")]
    pub exact_limit: usize,
    /// Epochs of early exaggeration (momentum 0.5 there, 0.8 after).
    #[serde(default = "default_exaggeration_epochs")]
    pub exaggeration_epochs: usize,
    /// Step size; absent = max(n / early_exaggeration, 200).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Barnes–Hut opening angle (smaller = closer to exact, slower).
    #[serde(default = "default_theta")]
    pub theta: f64,
    /// Threads for t-SNE; 0 = the caller's rayon pool (all cores). Any count gives the same
    /// coordinates (`tsne`: per-point forces, sums in a fixed order).
    #[serde(default)]
    pub threads: usize,
}

impl TsneSettings {
    /// The optimisation schedule for `n` points (exact repulsion or Barnes–Hut).
    pub fn schedule(&self, n: usize, exact: bool) -> crate::tsne::Schedule {
        // n / α (Belkina et al. 2019, openTSNE's "auto"; for a gradient without the factor 4):
        // measured on the analyze bench, it reaches a lower KL in 400 epochs than
        // scikit-learn's n / 4α did in 750 (benches/RESULTS.md).
        let auto = (n as f64 / self.early_exaggeration.max(1.0)).max(200.0);
        crate::tsne::Schedule {
            epochs: self.epochs,
            exaggeration: self.early_exaggeration,
            exaggeration_epochs: self.exaggeration_epochs.min(self.epochs),
            learning_rate: self.learning_rate.unwrap_or(auto),
            theta: (!exact).then_some(self.theta),
        }
    }
}

fn default_exaggeration_epochs() -> usize {
    100
}
fn default_theta() -> f64 {
    0.5
}
fn default_perplexity() -> f64 {
    7.0
}
fn default_exaggeration() -> f64 {
    6.0
}
/// 100 early-exaggeration epochs + 300: with the n / α step size this reaches a lower KL
/// than the former 250 + 500 at n / 4α (analyze bench: 2.599 against 2.613 at n = 1,300,
/// 4.412 against 4.423 at n = 10,000; benches/RESULTS.md).
fn default_epochs() -> usize {
    400
}
/// Barnes–Hut from 200 points: exact t-SNE is O(n²) per iteration.
fn default_exact_limit() -> usize {
    200
}

impl Default for TsneSettings {
    fn default() -> Self {
        TsneSettings {
            perplexity: default_perplexity(),
            early_exaggeration: default_exaggeration(),
            epochs: default_epochs(),
            distance: TsneDistance::Affinity,
            exact_limit: default_exact_limit(),
            exaggeration_epochs: default_exaggeration_epochs(),
            learning_rate: None,
            theta: default_theta(),
            threads: 0,
        }
    }
}

const AFFINITY_EPSILON: f64 = 1e-2;

/// The t-SNE start layout: the two principal axes of the first `k` eigenvectors (rows as
/// points), scaled to a standard deviation of 1e-2 as t-SNE expects, plus a deterministic
/// jitter of 1e-4 that separates coincident rows.
///
/// Why not simply eigenvectors 2 and 3: on a graph with several components those are
/// component indicators, nonzero on two components only, so every other component starts
/// on one point, and coincident points never separate (their mutual forces cancel).
pub fn tsne_init(vectors: ArrayView2<'_, f64>, k: usize) -> Vec<[f64; 2]> {
    let n = vectors.nrows();
    let k = k.min(vectors.ncols());
    let jitter = |i: usize, axis: u64| {
        // SplitMix64 of (index, axis): the same on every machine.
        let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ axis.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    if n == 0 {
        return Vec::new();
    }
    let x = vectors.slice(ndarray16::s![.., ..k]);
    let mean = x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| ndarray16::Array1::zeros(k));
    let centred = &x - &mean;
    // Principal axes of the k × k covariance (k ≤ 20: a tiny dense problem).
    let cov = centred.t().dot(&centred);
    let cov = nalgebra::DMatrix::from_fn(k, k, |r, c| cov[[r, c]]);
    let eig = nalgebra::SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        eig.eigenvalues[b]
            .total_cmp(&eig.eigenvalues[a])
            .then(a.cmp(&b))
    });
    let axis = |a: usize| -> Vec<f64> {
        match order.get(a) {
            Some(&c) => {
                let mut v: Vec<f64> = (0..k).map(|r| eig.eigenvectors[(r, c)]).collect();
                // Canonical sign: the largest entry positive.
                let pivot = v
                    .iter()
                    .copied()
                    .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
                if pivot < 0.0 {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            }
            None => vec![0.0; k],
        }
    };
    let (a0, a1) = (axis(0), axis(1));
    let project = |row: ndarray16::ArrayView1<'_, f64>, a: &[f64]| -> f64 {
        row.iter().zip(a).map(|(x, y)| x * y).sum()
    };
    let mut coords: Vec<[f64; 2]> = centred
        .rows()
        .into_iter()
        .map(|row| [project(row, &a0), project(row, &a1)])
        .collect();
    let spread = (coords.iter().map(|c| c[0] * c[0]).sum::<f64>() / n as f64).sqrt();
    let scale = if spread > 1e-12 { 1e-2 / spread } else { 0.0 };
    for (i, c) in coords.iter_mut().enumerate() {
        c[0] = c[0] * scale + 1e-4 * jitter(i, 0);
        c[1] = c[1] * scale + 1e-4 * jitter(i, 1);
    }
    coords
}

/// 2-D t-SNE, started from the spectral embedding (two smallest non-trivial eigenvectors,
/// scaled to a small spread) so that it is deterministic.
pub fn tsne(
    points: ArrayView2<'_, f32>,
    graph: &KnnGraph,
    wide_knn: Option<&KnnTable>,
    init: &[[f64; 2]],
    settings: &TsneSettings,
) -> Vec<[f32; 2]> {
    tsne_observed(
        points,
        graph,
        wide_knn,
        init,
        settings,
        &crate::progress::Silent,
    )
}

/// [`tsne`], reporting its epochs to `progress`.
pub fn tsne_observed(
    points: ArrayView2<'_, f32>,
    graph: &KnnGraph,
    wide_knn: Option<&KnnTable>,
    init: &[[f64; 2]],
    settings: &TsneSettings,
    progress: &dyn crate::progress::StepObserver,
) -> Vec<[f32; 2]> {
    let run = || tsne_here(points, graph, wide_knn, init, settings, progress);
    if settings.threads == 0 {
        return run();
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
    {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
}

fn tsne_here(
    points: ArrayView2<'_, f32>,
    graph: &KnnGraph,
    wide_knn: Option<&KnnTable>,
    init: &[[f64; 2]],
    settings: &TsneSettings,
    progress: &dyn crate::progress::StepObserver,
) -> Vec<[f32; 2]> {
    let n = points.nrows();
    progress.start("t-SNE input similarities", 0);
    let Some(p) = tsne_input(points, graph, wide_knn, settings) else {
        return init.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
    };
    let schedule = settings.schedule(n, n <= settings.exact_limit);
    crate::tsne::optimize_observed(&p, init, &schedule, progress)
        .iter()
        .map(|c| [c[0] as f32, c[1] as f32])
        .collect()
}

/// t-SNE's input similarities P for these points: over all pairs up to `exact_limit`
/// points, else over `wide_knn`; `None` when there are too few points (under 4) or the table
/// does not fit.
pub fn tsne_input(
    points: ArrayView2<'_, f32>,
    graph: &KnnGraph,
    wide_knn: Option<&KnnTable>,
    settings: &TsneSettings,
) -> Option<crate::tsne::InputAffinities> {
    let n = points.nrows();
    if n < 4 {
        return None;
    }
    // A perplexity above (n − 1) / 3 cannot be met with the neighbours there are.
    let perplexity = settings
        .perplexity
        .min((n as f64 - 1.0) / 3.0 - 1e-3)
        .max(1.0);
    let euclid = |a: usize, b: usize| -> f64 {
        points
            .row(a)
            .iter()
            .zip(points.row(b))
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let distance = |i: usize, j: usize, euclidean: f64| match settings.distance {
        TsneDistance::Affinity => 1.0 / (graph.affinity.get(i, j) + AFFINITY_EPSILON),
        TsneDistance::Euclidean => euclidean,
    };
    let exact = n <= settings.exact_limit;
    let neighbors: std::borrow::Cow<'_, [Vec<(usize, f64)>]> = if exact {
        (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let e = match settings.distance {
                            TsneDistance::Euclidean => euclid(i, j),
                            TsneDistance::Affinity => 0.0,
                        };
                        (j, distance(i, j, e))
                    })
                    .collect()
            })
            .collect::<Vec<_>>()
            .into()
    } else {
        // Barnes–Hut on a kNN table (3·perplexity neighbours by Euclidean distance, with
        // affinity-derived distances when asked: graph neighbours close, others far).
        // Euclidean distances are the table's own: it is used as it is, not copied (at
        // 1.28M points a copy is half a gigabyte).
        match wide_knn {
            Some(table) if table.neighbors.len() == n => match settings.distance {
                TsneDistance::Euclidean => std::borrow::Cow::Borrowed(&table.neighbors[..]),
                TsneDistance::Affinity => table
                    .neighbors
                    .iter()
                    .enumerate()
                    .map(|(i, row)| row.iter().map(|&(j, d)| (j, distance(i, j, d))).collect())
                    .collect::<Vec<_>>()
                    .into(),
            },
            _ => return None,
        }
    };
    Some(crate::tsne::InputAffinities::from_neighbors(
        &neighbors, perplexity,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EdgeWeight, Symmetrize};

    #[test]
    fn each_laplacian_has_its_embedding() {
        // a path 0 – 1 – 2: degrees 1, 2, 1
        let table = KnnTable {
            k: 1,
            neighbors: vec![vec![(1, 1.0)], vec![(0, 1.0)], vec![(1, 1.0)]],
        };
        let graph = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
        let vectors = Array2::<f64>::ones((3, 2));
        let plain = laplacian_embedding(LaplacianKind::Unnormalized, vectors.view(), &graph, 1);
        assert_eq!(plain, Array2::<f64>::ones((3, 1)));
        let walk = laplacian_embedding(LaplacianKind::RandomWalk, vectors.view(), &graph, 1);
        let expected = [1.0, 1.0 / 2f64.sqrt(), 1.0];
        for (got, want) in walk.column(0).iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let njw = laplacian_embedding(LaplacianKind::Symmetric, vectors.view(), &graph, 2);
        assert!(njw.iter().all(|v| (v - 1.0 / 2f64.sqrt()).abs() < 1e-12));
    }
}

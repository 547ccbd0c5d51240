//! The kNN affinity graph (exact, blocked, parallel) and its Laplacians, in sparse form.

use ndarray16::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// How neighbour distances become edge weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeWeight {
    /// 1 for every kNN edge (the thesis, Appendix E).
    #[default]
    Binary,
    /// exp(−d² / (2σ²)), σ = median distance to the k-th neighbour.
    Heat,
    /// σ / (σ + d), σ as for `heat`: closer neighbours weigh more, without a kernel width to tune.
    InverseDistance,
}

/// How the directed kNN relation becomes an undirected graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Symmetrize {
    /// W = max(A, Aᵀ): an edge if either point is among the other's neighbours (thesis).
    #[default]
    Max,
    /// W = (A + Aᵀ) / 2, as CoRelAy does.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LaplacianKind {
    /// L = D − W.
    Unnormalized,
    /// L_sym = I − D^-½ W D^-½ (the thesis; the default).
    #[default]
    Symmetric,
    /// L_rw = I − D⁻¹ W (same eigenvalues as L_sym; eigenvectors D^-½ v).
    RandomWalk,
}

/// Each point's k nearest other points, ascending by (distance, index).
#[derive(Debug, Clone)]
pub struct KnnTable {
    pub k: usize,
    /// `neighbors[i] = [(j, distance)]`, length k (or n − 1 when n ≤ k).
    pub neighbors: Vec<Vec<(usize, f64)>>,
}

impl KnnTable {
    /// The first `k` neighbours of every row: the same table `knn` gives for that k (rows are
    /// ascending by distance, then index), so one search serves both the graph and the wider
    /// neighbourhood t-SNE wants.
    pub fn truncated(&self, k: usize) -> KnnTable {
        KnnTable {
            k: k.min(self.k),
            neighbors: self
                .neighbors
                .iter()
                .map(|row| row[..k.min(row.len())].to_vec())
                .collect(),
        }
    }
}

/// k = ⌈ln n⌉ (von Luxburg's rule, used in the thesis), at least 1.
pub fn default_k(n: usize) -> usize {
    ((n.max(2) as f64).ln().ceil() as usize).max(1)
}

/// A neighbour list's lock, taken even if a panicking thread poisoned it (the panic itself
/// reaches the caller through rayon; the list is still a valid sorted buffer).
pub(crate) fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The value of a neighbour list's lock (see [`locked`]).
pub(crate) fn unlocked<T>(m: std::sync::Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Row `i`'s neighbours among `candidates` by exact f64 Euclidean distance, ascending by
/// (distance, index), the first `k`: what both searches return after their f32 candidate
/// phase, so near-ties are ordered as an exact method would.
pub(crate) fn exactly_ranked(
    points: ArrayView2<'_, f32>,
    i: usize,
    candidates: impl Iterator<Item = usize>,
    k: usize,
) -> Vec<(usize, f64)> {
    let a = points.row(i);
    let mut ranked: Vec<(usize, f64)> = candidates
        .map(|j| {
            let d = a
                .iter()
                .zip(points.row(j).iter())
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            (j, d)
        })
        .collect();
    ranked.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
    ranked.truncate(k);
    ranked
}

/// Rows (and columns) per tile of the exact search.
const KNN_TILE: usize = 1024;

/// The `keep` smallest candidates by (d², index), ascending: a small sorted buffer.
#[derive(Debug, Clone, Default)]
struct Candidates {
    best: Vec<(f32, usize)>,
    /// The largest kept d² once the buffer is full (+∞ before): most offers are rejected by
    /// this one comparison.
    bound: f32,
}

impl Candidates {
    fn new(keep: usize) -> Candidates {
        Candidates {
            best: Vec::with_capacity(keep + 1),
            bound: f32::INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, d2: f32, j: usize, keep: usize) {
        if d2 > self.bound {
            return;
        }
        if self.best.len() == keep {
            let worst = self.best[keep - 1];
            if d2.total_cmp(&worst.0).then(j.cmp(&worst.1)).is_ge() {
                return;
            }
        }
        let at = self
            .best
            .partition_point(|b| b.0.total_cmp(&d2).then(b.1.cmp(&j)).is_lt());
        self.best.insert(at, (d2, j));
        self.best.truncate(keep);
        if self.best.len() == keep {
            self.bound = self.best[keep - 1].0;
        }
    }
}

/// Exact kNN with Euclidean distances: memory O(tile² + n·k), never n×n.
///
/// The points are cut into tiles of rows; each pair of tiles (I, J ≥ I) is one GEMM
/// (|a − b|² = |a|² + |b|² − 2 a·b in f32), whose entries serve both I's rows and J's, so half
/// the distance products are computed. Each row keeps its k + 8 best by (d², index); the
/// result does not depend on the order in which tiles are merged (a total order), so not on
/// thread scheduling. The kept candidates are ranked by exact f64 distances, so near-ties are
/// ordered as an exact method would.
pub fn knn(points: ArrayView2<'_, f32>, k: usize) -> KnnTable {
    knn_observed(points, k, &crate::progress::Silent)
}

/// [`knn`], reporting its tile pairs to `progress`.
pub fn knn_observed(
    points: ArrayView2<'_, f32>,
    k: usize,
    progress: &dyn crate::progress::StepObserver,
) -> KnnTable {
    let n = points.nrows();
    let k = k.min(n.saturating_sub(1));
    if k == 0 {
        return KnnTable {
            k,
            neighbors: vec![Vec::new(); n],
        };
    }
    let norms: Vec<f32> = points
        .axis_iter(Axis(0))
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let keep = (k + 8).min(n - 1);
    let tiles: Vec<usize> = (0..n).step_by(KNN_TILE).collect();
    let pairs: Vec<(usize, usize)> = (0..tiles.len())
        .flat_map(|a| (a..tiles.len()).map(move |b| (a, b)))
        .collect();
    let rows: Vec<std::sync::Mutex<Candidates>> = (0..n)
        .map(|_| std::sync::Mutex::new(Candidates::new(keep)))
        .collect();
    let merge = |i: usize, local: &Candidates| {
        let mut row = locked(&rows[i]);
        for &(d2, j) in &local.best {
            row.offer(d2, j, keep);
        }
    };
    // A row's current k-th best bounds what a tile can still contribute to it: starting each
    // tile's local buffer from it makes most offers a single comparison.
    let bound_of = |i: usize| locked(&rows[i]).bound;
    let seeded = |i: usize| Candidates {
        bound: bound_of(i),
        ..Candidates::new(keep)
    };
    progress.start("kNN search (exact)", pairs.len() as u64);
    pairs.par_iter().for_each(|&(a, b)| {
        let (ia, ib) = (tiles[a], tiles[b]);
        let (ea, eb) = ((ia + KNN_TILE).min(n), (ib + KNN_TILE).min(n));
        let dots: Array2<f32> = points
            .slice(s![ia..ea, ..])
            .dot(&points.slice(s![ib..eb, ..]).t());
        let norms_b = &norms[ib..eb];
        // Off the diagonal, the same entries serve tile b's rows (as columns here).
        let mut columns: Vec<Candidates> = if a != b {
            (ib..eb).map(seeded).collect()
        } else {
            Vec::new()
        };
        for (r, dot_row) in dots.outer_iter().enumerate() {
            let i = ia + r;
            let ni = norms[i];
            let mut local = seeded(i);
            for (c, (&dot, &nj)) in dot_row.iter().zip(norms_b).enumerate() {
                let j = ib + c;
                if i == j {
                    continue;
                }
                let d2 = (ni + nj - 2.0 * dot).max(0.0);
                local.offer(d2, j, keep);
                if let Some(col) = columns.get_mut(c) {
                    col.offer(d2, i, keep);
                }
            }
            merge(i, &local);
        }
        for (c, col) in columns.iter().enumerate() {
            merge(ib + c, col);
        }
        progress.advance(1);
    });
    let neighbors: Vec<Vec<(usize, f64)>> = rows
        .into_par_iter()
        .enumerate()
        .map(|(i, row)| {
            let best = unlocked(row).best;
            exactly_ranked(points, i, best.iter().map(|&(_, j)| j), k)
        })
        .collect();
    KnnTable { k, neighbors }
}

/// A symmetric sparse matrix in CSR form (both triangles stored), rows sorted by column.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseSymmetric {
    pub n: usize,
    pub row_ptr: Vec<usize>,
    pub cols: Vec<usize>,
    pub values: Vec<f64>,
}

impl SparseSymmetric {
    pub fn from_triplets(n: usize, mut triplets: Vec<(usize, usize, f64)>) -> Self {
        triplets.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut row_ptr = vec![0usize; n + 1];
        let mut cols = Vec::with_capacity(triplets.len());
        let mut values = Vec::with_capacity(triplets.len());
        for (i, j, v) in triplets {
            row_ptr[i + 1] += 1;
            cols.push(j);
            values.push(v);
        }
        for i in 0..n {
            row_ptr[i + 1] += row_ptr[i];
        }
        SparseSymmetric {
            n,
            row_ptr,
            cols,
            values,
        }
    }

    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        (self.row_ptr[i]..self.row_ptr[i + 1]).map(move |p| (self.cols[p], self.values[p]))
    }

    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        let range = self.row_ptr[i]..self.row_ptr[i + 1];
        match self.cols[range.clone()].binary_search(&j) {
            Ok(p) => self.values[range.start + p],
            Err(_) => 0.0,
        }
    }

    /// Y = A X for a block of column vectors X (n × m), in parallel over rows. Works on plain
    /// row-major slices: this product is LOBPCG's inner loop.
    pub fn mul_block(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let m = x.ncols();
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let mut out = vec![0.0f64; self.n * m];
        out.par_chunks_mut(m.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for p in self.row_ptr[i]..self.row_ptr[i + 1] {
                    let (j, v) = (self.cols[p], self.values[p]);
                    for (o, xv) in row.iter_mut().zip(&xs[j * m..(j + 1) * m]) {
                        *o += v * xv;
                    }
                }
            });
        Array2::from_shape_vec((self.n, m), out).expect("n × m")
    }

    pub fn to_dense(&self) -> Array2<f64> {
        let mut d = Array2::zeros((self.n, self.n));
        for i in 0..self.n {
            for (j, v) in self.row(i) {
                d[[i, j]] = v;
            }
        }
        d
    }
}

/// The affinity matrix W of the kNN graph.
#[derive(Debug, Clone)]
pub struct KnnGraph {
    pub k: usize,
    pub affinity: SparseSymmetric,
}

impl KnnGraph {
    pub fn build(table: &KnnTable, weight: EdgeWeight, symmetrize: Symmetrize) -> KnnGraph {
        let n = table.neighbors.len();
        let mut kth: Vec<f64> = table
            .neighbors
            .iter()
            .filter_map(|r| r.last().map(|x| x.1))
            .collect();
        kth.sort_by(f64::total_cmp);
        let sigma = kth.get(kth.len() / 2).copied().unwrap_or(1.0).max(1e-12);
        let w = |d: f64| match weight {
            EdgeWeight::Binary => 1.0,
            EdgeWeight::Heat => (-(d * d) / (2.0 * sigma * sigma)).exp(),
            EdgeWeight::InverseDistance => sigma / (sigma + d),
        };
        // Directed weights, then both directions combined.
        let mut directed: std::collections::HashMap<(usize, usize), f64> =
            std::collections::HashMap::with_capacity(n * table.k);
        for (i, row) in table.neighbors.iter().enumerate() {
            for &(j, d) in row {
                directed.insert((i, j), w(d));
            }
        }
        let mut triplets = Vec::with_capacity(2 * directed.len());
        for (&(i, j), &a) in &directed {
            let b = directed.get(&(j, i)).copied();
            let combined = match (symmetrize, b) {
                (Symmetrize::Max, Some(b)) => a.max(b),
                (Symmetrize::Max, None) => a,
                (Symmetrize::Mean, Some(b)) => (a + b) / 2.0,
                (Symmetrize::Mean, None) => a / 2.0,
            };
            triplets.push((i, j, combined));
            if b.is_none() {
                triplets.push((j, i, combined));
            }
        }
        KnnGraph {
            k: table.k,
            affinity: SparseSymmetric::from_triplets(n, triplets),
        }
    }

    pub fn degrees(&self) -> Vec<f64> {
        (0..self.affinity.n)
            .map(|i| self.affinity.row(i).map(|(_, v)| v).sum())
            .collect()
    }

    /// The Laplacian in symmetric sparse form: L (unnormalised) or L_sym (also used for
    /// L_rw, whose eigenvalues it shares). An isolated vertex has an all-zero row, so it
    /// counts as a component of its own (eigenvalue 0), as in scipy's csgraph.laplacian.
    pub fn laplacian(&self, kind: LaplacianKind) -> SparseSymmetric {
        let a = &self.affinity;
        let deg = self.degrees();
        let inv_sqrt: Vec<f64> = deg
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
            .collect();
        let mut triplets = Vec::with_capacity(a.nnz() + a.n);
        for i in 0..a.n {
            let mut diag = match kind {
                LaplacianKind::Unnormalized => deg[i],
                _ if deg[i] > 0.0 => 1.0,
                _ => 0.0,
            };
            for (j, v) in a.row(i) {
                if j == i {
                    // self loops do not occur in kNN graphs, but keep the algebra right
                    diag -= match kind {
                        LaplacianKind::Unnormalized => v,
                        _ => v * inv_sqrt[i] * inv_sqrt[i],
                    };
                    continue;
                }
                let value = match kind {
                    LaplacianKind::Unnormalized => -v,
                    _ => -v * inv_sqrt[i] * inv_sqrt[j],
                };
                triplets.push((i, j, value));
            }
            triplets.push((i, i, diag));
        }
        SparseSymmetric::from_triplets(a.n, triplets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray16::array;

    #[test]
    fn knn_finds_nearest_with_index_tiebreak() {
        let pts = array![[0.0f32], [1.0], [3.0], [4.0], [2.0]];
        let t = knn(pts.view(), 2);
        assert_eq!(
            t.neighbors[0].iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 4]
        );
        // point 4 (=2.0): 1 and 2 both at distance 1 → lower index first
        assert_eq!(
            t.neighbors[4].iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!((t.neighbors[4][0].1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn symmetrization_by_max_and_mean() {
        // 0→1, 1→2, 2→1: (0,1) one-directional, (1,2) mutual
        let table = KnnTable {
            k: 1,
            neighbors: vec![vec![(1, 1.0)], vec![(2, 1.0)], vec![(1, 1.0)]],
        };
        let max = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
        assert_eq!(max.affinity.get(0, 1), 1.0);
        assert_eq!(max.affinity.get(1, 0), 1.0);
        assert_eq!(max.affinity.get(1, 2), 1.0);
        let mean = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Mean);
        assert_eq!(mean.affinity.get(0, 1), 0.5);
        assert_eq!(mean.affinity.get(1, 0), 0.5);
        assert_eq!(mean.affinity.get(2, 1), 1.0);
    }

    #[test]
    fn laplacians_by_hand() {
        // path 0 - 1 - 2, binary
        let table = KnnTable {
            k: 1,
            neighbors: vec![vec![(1, 1.0)], vec![(0, 1.0)], vec![(1, 1.0)]],
        };
        let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
        let l = g.laplacian(LaplacianKind::Unnormalized).to_dense();
        assert_eq!(
            l,
            array![[1.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 1.0]]
        );
        let ls = g.laplacian(LaplacianKind::Symmetric).to_dense();
        let r = 1.0 / 2f64.sqrt();
        let expected = array![[1.0, -r, 0.0], [-r, 1.0, -r], [0.0, -r, 1.0]];
        assert!((ls - expected).iter().all(|v| v.abs() < 1e-12));
    }
}

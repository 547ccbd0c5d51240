//! The smallest eigenpairs of one large connected component in bounded memory: Chebyshev-
//! filtered subspace iteration (Zhou & Saad 2007, "ChFSI").
//!
//! Why not Lanczos here: on a graph of hundreds of thousands of overlapping samples the 20
//! smallest eigenvalues of L_sym are tightly clustered, and Lanczos with full
//! reorthogonalisation needs a Krylov basis of well over a thousand vectors (200,000 maps:
//! more than 1,700 vectors, 3.2 GB and over 15 min, benches/RESULTS.md) — n · j memory and
//! n · j² time. A block of b vectors filtered by a Chebyshev polynomial of the matrix needs
//! only three n × b blocks whatever the spectrum looks like, and its products are
//! sparse-times-block
//! (the matrix is read once for all b vectors) instead of one vector at a time.
//!
//! The filter: the degree-d Chebyshev polynomial mapped onto [lower, upper] stays within ±1
//! there and grows like cosh(d · acosh|t|) below `lower`, so after filtering the block is
//! dominated by the eigenvectors under `lower` (the wanted end). `upper` is the Gershgorin
//! bound (≥ λ_max), `lower` the largest Ritz value of the current block, which falls towards
//! λ_b as the iteration proceeds. The scaled three-term recurrence keeps the block's
//! magnitude near 1 at the smallest Ritz value, so nothing overflows at any degree. Each
//! filtered block is orthonormalised (SVQB, twice) and Rayleigh–Ritz gives the new Ritz
//! pairs; the iteration stops when the m leading pairs have residual ≤ tol · ‖A‖.
//!
//! A block method also sees every copy of a repeated eigenvalue up to the block size, so no
//! deflated restarts are needed here.
//!
//! Determinism: the start block is seeded; every product is computed per row, and every sum
//! over rows (Gram matrices, residual norms) runs over fixed row blocks whose partial sums
//! are added in block order — the same result on any thread count.
//!
//! Memory: three n × b blocks of f64 (b = 2m = 40: 1.2 GB at 1.28M vertices) and b × b
//! matrices; no n × n anything.

use ndarray16::{Array2, ArrayView2, ArrayViewMut2};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::graph::SparseSymmetric;

/// Rows per block of every parallel pass (fixed, so partial sums add up in the same order on
/// any thread count).
const ROW_BLOCK: usize = 1024;

/// How the filtered subspace iteration runs.
#[derive(Debug, Clone, Copy)]
pub struct FilterSettings {
    /// Block size: the wanted pairs and a guard band (the pairs just above the m-th converge
    /// slowest; carrying them makes the m-th converge at the rate of λ_m/λ_b).
    pub block: usize,
    /// Degree of the Chebyshev filter per iteration (matrix products per iteration).
    pub degree: usize,
    /// Iterations before giving up and returning the best pairs found.
    pub max_iterations: usize,
    /// Relative residual ‖A v − θ v‖ ≤ tol · ‖A‖ for a pair to count as converged.
    pub tol: f64,
}

impl FilterSettings {
    /// Defaults for m wanted pairs (measured on ImageNet-shaped graphs, benches/RESULTS.md).
    pub fn for_pairs(m: usize) -> Self {
        Self {
            block: (2 * m).max(m + 8),
            degree: 60,
            max_iterations: 300,
            tol: 1e-10,
        }
    }
}

/// A block of `cols` column vectors of length n, stored row-major (row i's entries
/// together: what a sparse-times-block product reads per neighbour).
struct Block {
    cols: usize,
    data: Vec<f64>,
}

impl Block {
    fn zeros(n: usize, cols: usize) -> Self {
        Self {
            cols,
            data: vec![0.0; n * cols],
        }
    }

    fn row_blocks(&self) -> impl IndexedParallelIterator<Item = ArrayView2<'_, f64>> {
        let cols = self.cols;
        self.data.par_chunks(ROW_BLOCK * cols).map(move |chunk| {
            ArrayView2::from_shape((chunk.len() / cols, cols), chunk).expect("rows × cols")
        })
    }

    fn row_blocks_mut(&mut self) -> impl IndexedParallelIterator<Item = ArrayViewMut2<'_, f64>> {
        let cols = self.cols;
        self.data
            .par_chunks_mut(ROW_BLOCK * cols)
            .map(move |chunk| {
                ArrayViewMut2::from_shape((chunk.len() / cols, cols), chunk).expect("rows × cols")
            })
    }

    fn column(&self, c: usize) -> Vec<f64> {
        self.data
            .iter()
            .skip(c)
            .step_by(self.cols)
            .copied()
            .collect()
    }
}

/// out = A · x.
fn multiply(a: &SparseSymmetric, x: &Block, out: &mut Block) {
    multiply_raw(a, &x.data, &mut out.data, x.cols);
}

/// out = A · x for row-major blocks of b columns.
fn multiply_raw(a: &SparseSymmetric, x: &[f64], out: &mut [f64], b: usize) {
    out.par_chunks_mut(ROW_BLOCK * b)
        .enumerate()
        .for_each(|(blk, chunk)| {
            let first = blk * ROW_BLOCK;
            for (r, row) in chunk.chunks_mut(b).enumerate() {
                row.iter_mut().for_each(|v| *v = 0.0);
                let i = first + r;
                for p in a.row_ptr[i]..a.row_ptr[i + 1] {
                    let (j, v) = (a.cols[p], a.values[p]);
                    row.iter_mut()
                        .zip(&x[j * b..(j + 1) * b])
                        .for_each(|(o, xv)| *o += v * xv);
                }
            }
        });
}

/// xᵀ y (x.cols × y.cols), partial products per row block summed in block order.
fn gram(x: &Block, y: &Block) -> Array2<f64> {
    let partials: Vec<Array2<f64>> = x
        .row_blocks()
        .zip(y.row_blocks())
        .map(|(xb, yb)| xb.t().dot(&yb))
        .collect();
    let mut g = Array2::zeros((x.cols, y.cols));
    for p in partials {
        g += &p;
    }
    g
}

/// x ← x · s (s square), row block by row block: each row of the product depends only on
/// the same row of x, so one block-sized buffer per row block replaces a second n × b block.
fn times_in_place(x: &mut Block, s: &Array2<f64>) {
    debug_assert_eq!(s.nrows(), s.ncols());
    x.row_blocks_mut().for_each(|mut xb| {
        let product = xb.dot(s);
        xb.assign(&product);
    });
}

/// Eigenpairs of a small symmetric matrix, ascending (ties by index).
fn symmetric_eigen(h: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let b = h.nrows();
    let sym = nalgebra::DMatrix::from_fn(b, b, |i, j| 0.5 * (h[[i, j]] + h[[j, i]]));
    let eig = nalgebra::SymmetricEigen::new(sym);
    let mut order: Vec<usize> = (0..b).collect();
    order.sort_by(|&p, &q| {
        eig.eigenvalues[p]
            .total_cmp(&eig.eigenvalues[q])
            .then(p.cmp(&q))
    });
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let vectors = Array2::from_shape_fn((b, b), |(r, c)| eig.eigenvectors[(r, order[c])]);
    (values, vectors)
}

/// Orthonormalise the block's columns in place by SVQB (Stathopoulos & Wu 2002): scale the
/// columns to unit norm, diagonalise the Gram matrix G = U Σ Uᵀ and multiply by U Σ^-½ —
/// stable where Cholesky QR would break down on the nearly dependent columns a strong filter
/// produces (Σ is floored, so such directions come back as fresh, if noisy, ones). Repeated
/// until the block is orthonormal to 1e-12 (two passes in practice).
fn orthonormalise(x: &mut Block) {
    let b = x.cols;
    for _ in 0..4 {
        let g = gram(x, x);
        let off = (0..b)
            .flat_map(|i| (0..b).map(move |j| (i, j)))
            .map(|(i, j)| (g[[i, j]] - if i == j { 1.0 } else { 0.0 }).abs())
            .fold(0.0, f64::max);
        if off < 1e-12 {
            return;
        }
        let d: Vec<f64> = (0..b)
            .map(|i| {
                let gi = g[[i, i]];
                if gi > 1e-300 {
                    1.0 / gi.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let scaled = Array2::from_shape_fn((b, b), |(i, j)| d[i] * g[[i, j]] * d[j]);
        let (sigma, u) = symmetric_eigen(&scaled);
        let floor = 1e-14 * sigma.last().copied().unwrap_or(1.0).max(1e-300);
        let t = Array2::from_shape_fn((b, b), |(i, c)| {
            d[i] * u[[i, c]] / sigma[c].max(floor).sqrt()
        });
        times_in_place(x, &t);
    }
}

/// ‖A x_c − θ_c x_c‖ per column.
fn residual_norms(x: &Block, ax: &Block, theta: &[f64]) -> Vec<f64> {
    let b = x.cols;
    let partials: Vec<Vec<f64>> = x
        .row_blocks()
        .zip(ax.row_blocks())
        .map(|(xb, ab)| {
            let mut s = vec![0.0; b];
            for (xr, ar) in xb.rows().into_iter().zip(ab.rows()) {
                for c in 0..b {
                    let r = ar[c] - theta[c] * xr[c];
                    s[c] += r * r;
                }
            }
            s
        })
        .collect();
    let mut total = vec![0.0; b];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total.into_iter().map(f64::sqrt).collect()
}

/// Rayleigh–Ritz on the orthonormal block x with ax = A x: returns the Ritz values
/// (ascending) and turns x and ax into the Ritz vectors and their images, in place.
fn rayleigh_ritz(x: &mut Block, ax: &mut Block) -> Vec<f64> {
    let h = gram(x, ax);
    let (theta, s) = symmetric_eigen(&h);
    times_in_place(x, &s);
    times_in_place(ax, &s);
    theta
}

/// The degree-d scaled Chebyshev filter of `a` on [lower, upper] applied to x, given
/// ax = A x: the filtered block is left in `x`; `ax` and `w` are work space afterwards.
fn filter(
    a: &SparseSymmetric,
    degree: usize,
    (smallest, lower, upper): (f64, f64, f64),
    x: &mut Block,
    ax: &mut Block,
    w: &mut Block,
) {
    let e = 0.5 * (upper - lower);
    let c = 0.5 * (upper + lower);
    // σ scales the polynomial to 1 at the smallest Ritz value (Zhou–Saad's Algorithm 4.1).
    let mut sigma = e / (smallest - c);
    let tau = 2.0 / sigma;
    // The first term, (A x − c x) σ / e, overwrites ax: from here on `prev` holds the
    // previous term, `cur` the current one and `next` receives the one after.
    let k = sigma / e;
    ax.data
        .par_chunks_mut(ROW_BLOCK)
        .zip(x.data.par_chunks(ROW_BLOCK))
        .for_each(|(ac, xc)| {
            for (av, xv) in ac.iter_mut().zip(xc) {
                *av = (*av - c * xv) * k;
            }
        });
    let (prev, cur, next) = (&mut x.data, &mut ax.data, &mut w.data);
    for _ in 1..degree {
        let s_next = 1.0 / (tau - sigma);
        multiply_raw(a, cur, next, x.cols);
        let (k1, k2) = (2.0 * s_next / e, sigma * s_next);
        next.par_chunks_mut(ROW_BLOCK)
            .zip(cur.par_chunks(ROW_BLOCK))
            .zip(prev.par_chunks(ROW_BLOCK))
            .for_each(|((nc, cc), pc)| {
                for ((nv, cv), pv) in nc.iter_mut().zip(cc).zip(pc) {
                    *nv = (*nv - c * cv) * k1 - k2 * pv;
                }
            });
        // prev ← cur, cur ← next; the old prev's storage receives the next term.
        std::mem::swap(prev, cur);
        std::mem::swap(cur, next);
        sigma = s_next;
    }
    // The last term is in `cur`; hand it back in x.
    std::mem::swap(prev, cur);
}

/// Outcome of one solve: the m leading pairs and how the iteration went.
#[derive(Debug, Clone)]
pub struct FilterReport {
    pub iterations: usize,
    pub products: usize,
    pub converged: usize,
}

/// The m smallest eigenpairs of the connected symmetric matrix `a` whose spectrum lies in
/// [−upper, upper] (`upper` a bound on ‖A‖, e.g. Gershgorin's), by Chebyshev-filtered
/// subspace iteration. Always returns min(m, n) pairs: when `max_iterations` runs out the
/// best Ritz pairs found are returned and [`FilterReport::converged`] says how many met the
/// tolerance.
pub fn smallest(
    a: &SparseSymmetric,
    m: usize,
    upper: f64,
    settings: &FilterSettings,
    seed: u64,
) -> (Vec<(f64, Vec<f64>)>, FilterReport) {
    let n = a.n;
    let m = m.min(n);
    let b = settings.block.max(m).min(n);
    let mut report = FilterReport {
        iterations: 0,
        products: 0,
        converged: 0,
    };
    if m == 0 {
        return (Vec::new(), report);
    }
    let mut rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(seed);
    let mut x = Block::zeros(n, b);
    x.data.iter_mut().for_each(|v| *v = rng.gen::<f64>() - 0.5);
    // Three n × b blocks in all: the iterate, its image under A, and the filter's third term.
    let (mut ax, mut w) = (Block::zeros(n, b), Block::zeros(n, b));
    orthonormalise(&mut x);
    multiply(a, &x, &mut ax);
    report.products += 1;
    let mut theta = rayleigh_ritz(&mut x, &mut ax);
    loop {
        let res = residual_norms(&x, &ax, &theta);
        report.converged = res
            .iter()
            .take(m)
            .take_while(|&&r| r <= settings.tol * upper)
            .count();
        tracing::debug!(
            n,
            iteration = report.iterations,
            converged = report.converged,
            worst_wanted_residual = res.iter().take(m).fold(0.0f64, |w, &r| w.max(r)) / upper,
            lower = theta[b - 1],
            "filtered subspace iteration"
        );
        if report.converged >= m || report.iterations >= settings.max_iterations {
            break;
        }
        report.iterations += 1;
        let smallest = theta[0];
        // The filter needs lower > smallest; a block whose Ritz values coincide (all copies of
        // one repeated eigenvalue) gets a small interval just above them.
        let lower = theta[b - 1]
            .max(smallest + 1e-9 * upper)
            .min(upper * (1.0 - 1e-12));
        filter(
            a,
            settings.degree,
            (smallest, lower, upper),
            &mut x,
            &mut ax,
            &mut w,
        );
        report.products += settings.degree.saturating_sub(1);
        orthonormalise(&mut x);
        multiply(a, &x, &mut ax);
        report.products += 1;
        theta = rayleigh_ritz(&mut x, &mut ax);
    }
    let pairs = (0..m)
        .map(|c| {
            let mut v = x.column(c);
            let nv = v.iter().map(|t| t * t).sum::<f64>().sqrt();
            v.iter_mut().for_each(|t| *t /= nv);
            (theta[c], v)
        })
        .collect();
    (pairs, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_laplacian(n: usize) -> SparseSymmetric {
        let mut t = Vec::new();
        for i in 0..n {
            let deg = if i == 0 || i + 1 == n { 1.0 } else { 2.0 };
            t.push((i, i, deg));
            if i + 1 < n {
                t.push((i, i + 1, -1.0));
                t.push((i + 1, i, -1.0));
            }
        }
        SparseSymmetric::from_triplets(n, t)
    }

    #[test]
    fn a_path_matches_its_closed_form_spectrum() {
        let n = 600;
        let a = path_laplacian(n);
        let settings = FilterSettings::for_pairs(6);
        let (pairs, report) = smallest(&a, 6, 4.0, &settings, 1);
        assert_eq!(report.converged, 6, "{report:?}");
        for (k, (value, v)) in pairs.iter().enumerate() {
            let exact = 2.0 - 2.0 * (std::f64::consts::PI * k as f64 / n as f64).cos();
            assert!(
                (value - exact).abs() < 1e-9,
                "λ{k} = {value}, expected {exact}"
            );
            let mut av = vec![0.0; n];
            for (i, o) in av.iter_mut().enumerate() {
                *o = a.row(i).map(|(j, w)| w * v[j]).sum();
            }
            let r: f64 = av.iter().zip(v).map(|(p, q)| (p - value * q).powi(2)).sum();
            assert!(r.sqrt() < 1e-8, "residual {}", r.sqrt());
        }
    }

    #[test]
    fn a_repeated_eigenvalue_is_found_in_full() {
        // A star of 300 leaves: eigenvalue 1 with multiplicity 299 above the zero.
        let n = 301;
        let mut t = vec![(0, 0, 300.0)];
        for leaf in 1..n {
            t.extend([(0, leaf, -1.0), (leaf, 0, -1.0), (leaf, leaf, 1.0)]);
        }
        let a = SparseSymmetric::from_triplets(n, t);
        let (pairs, _) = smallest(&a, 5, 600.0, &FilterSettings::for_pairs(5), 3);
        assert!(pairs[0].0.abs() < 1e-9);
        for p in &pairs[1..] {
            assert!((p.0 - 1.0).abs() < 1e-9, "{}", p.0);
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let a = path_laplacian(5000);
        let settings = FilterSettings::for_pairs(4);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| smallest(&a, 4, 4.0, &settings, 7).0)
        };
        let one = run(1);
        for threads in [2, 3] {
            let other = run(threads);
            for (p, q) in one.iter().zip(&other) {
                assert_eq!(p.0.to_bits(), q.0.to_bits());
                assert!(p
                    .1
                    .iter()
                    .zip(&q.1)
                    .all(|(s, t)| s.to_bits() == t.to_bits()));
            }
        }
    }
}

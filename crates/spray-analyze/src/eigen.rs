//! The smallest eigenpairs of a sparse symmetric Laplacian: a dense solver (nalgebra) for
//! small graphs, per connected component ([`crate::lanczos`]) Chebyshev-filtered subspace
//! iteration (default) or Lanczos for large ones, and LOBPCG (linfa-linalg) on request.

use ndarray16::Array2;
use rand::SeedableRng;

use crate::graph::SparseSymmetric;
use crate::lanczos::LargeComponents;
use crate::AnalyzeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EigenSolver {
    /// Dense up to `dense_limit` vertices; above, per connected component: dense for small
    /// components, Chebyshev-filtered subspace iteration for the rest (bounded memory, and
    /// faster than Lanczos at every measured size: benches/RESULTS.md).
    #[default]
    Auto,
    Dense,
    /// Lanczos with full reorthogonalisation, per connected component, with deflated restarts
    /// for repeated eigenvalues.
    Lanczos,
    /// Per connected component, Chebyshev-filtered subspace iteration (what `auto` uses above
    /// `dense_limit`, at any n).
    Chebyshev,
    /// LOBPCG on the whole sparse matrix (the solver before Lanczos; slower on graphs with
    /// many components).
    #[serde(alias = "lobpcg")]
    Sparse,
}

/// Eigenvalues ascending, eigenvectors as columns (n × m).
#[derive(Debug, Clone)]
pub struct Eigenpairs {
    pub values: Vec<f64>,
    pub vectors: Array2<f64>,
}

pub fn smallest(
    laplacian: &SparseSymmetric,
    m: usize,
    solver: EigenSolver,
    dense_limit: usize,
    seed: u64,
) -> Result<Eigenpairs, AnalyzeError> {
    let n = laplacian.n;
    let m = m.min(n);
    if m == 0 {
        return Ok(Eigenpairs {
            values: Vec::new(),
            vectors: Array2::zeros((n, 0)),
        });
    }
    // LOBPCG needs a block well below n; tiny problems always go dense.
    match solver {
        EigenSolver::Sparse if n > 5 * m => sparse_smallest(laplacian, m, seed),
        EigenSolver::Lanczos => Ok(per_component(laplacian, m, seed, LargeComponents::Lanczos)),
        EigenSolver::Chebyshev => Ok(per_component(laplacian, m, seed, LargeComponents::Filtered)),
        EigenSolver::Auto if n > dense_limit => {
            Ok(per_component(laplacian, m, seed, LargeComponents::Filtered))
        }
        _ => Ok(dense_smallest(laplacian, m)),
    }
}

/// [`crate::lanczos::smallest`] with canonical signs.
pub fn lanczos_smallest(laplacian: &SparseSymmetric, m: usize, seed: u64) -> Eigenpairs {
    per_component(laplacian, m, seed, LargeComponents::Lanczos)
}

/// [`crate::lanczos::smallest_with`] with canonical signs.
fn per_component(
    laplacian: &SparseSymmetric,
    m: usize,
    seed: u64,
    large: LargeComponents,
) -> Eigenpairs {
    let (values, mut vectors) = crate::lanczos::smallest_with(laplacian, m, seed, large);
    let values = values.into_iter().map(|v| v.max(0.0)).collect();
    canonical_signs(&mut vectors);
    Eigenpairs { values, vectors }
}

pub fn dense_smallest(laplacian: &SparseSymmetric, m: usize) -> Eigenpairs {
    let mut pairs = dense_unsigned(laplacian, m);
    canonical_signs(&mut pairs.vectors);
    pairs
}

/// The dense solver without the sign convention (for use on submatrices).
pub(crate) fn dense_unsigned(laplacian: &SparseSymmetric, m: usize) -> Eigenpairs {
    let n = laplacian.n;
    let mut dense = nalgebra::DMatrix::<f64>::zeros(n, n);
    for i in 0..n {
        for (j, v) in laplacian.row(i) {
            dense[(i, j)] = v;
        }
    }
    let eig = nalgebra::SymmetricEigen::new(dense);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        eig.eigenvalues[a]
            .total_cmp(&eig.eigenvalues[b])
            .then(a.cmp(&b))
    });
    let m = m.min(n);
    let mut vectors = Array2::zeros((n, m));
    let mut values = Vec::with_capacity(m);
    for (c, &idx) in order.iter().take(m).enumerate() {
        values.push(eig.eigenvalues[idx]);
        for r in 0..n {
            vectors[[r, c]] = eig.eigenvectors[(r, idx)];
        }
    }
    Eigenpairs { values, vectors }
}

/// LOBPCG for the m smallest eigenpairs of a sparse symmetric positive semi-definite matrix.
/// A few extra block vectors speed convergence of the last wanted pairs.
pub fn sparse_smallest(
    laplacian: &SparseSymmetric,
    m: usize,
    seed: u64,
) -> Result<Eigenpairs, AnalyzeError> {
    let n = laplacian.n;
    let block = (m + 5).min(n / 5).max(m);
    let mut rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(seed);
    let x0 = Array2::from_shape_fn((n, block), |_| rand::Rng::gen::<f64>(&mut rng) - 0.5);
    // Jacobi preconditioner: the diagonal's inverse. L_sym's diagonal is all ones (or zero
    // for isolated vertices), so there it is skipped rather than applied as a no-op.
    let diag: Vec<f64> = (0..n).map(|i| laplacian.get(i, i)).collect();
    let trivial = diag.iter().all(|&d| d == 0.0 || (d - 1.0).abs() < 1e-12);
    let result = linfa_linalg::lobpcg::lobpcg(
        |x| laplacian.mul_block(x),
        x0,
        |mut x| {
            if trivial {
                return;
            }
            for (row, &d) in x.rows_mut().into_iter().zip(&diag) {
                if d > 1e-12 {
                    let mut row = row;
                    row.mapv_inplace(|v| v / d);
                }
            }
        },
        None,
        1e-9,
        2000,
        linfa_linalg::Order::Smallest,
    );
    let lob = match result {
        Ok(r) => r,
        // Not fully converged: keep the best iterate when its residuals are small enough.
        Err((_, Some(r))) if r.rnorm.iter().take(m).all(|&v| v < 1e-5) => r,
        Err((e, _)) => {
            return Err(AnalyzeError::Eigen(format!(
                "LOBPCG did not converge for n = {n}, m = {m}: {e}; try solver = \"dense\""
            )))
        }
    };
    let mut order: Vec<usize> = (0..lob.eigvals.len()).collect();
    order.sort_by(|&a, &b| lob.eigvals[a].total_cmp(&lob.eigvals[b]));
    let mut vectors = Array2::zeros((n, m));
    let mut values = Vec::with_capacity(m);
    for (c, &idx) in order.iter().take(m).enumerate() {
        values.push(lob.eigvals[idx].max(0.0));
        vectors.column_mut(c).assign(&lob.eigvecs.column(idx));
    }
    canonical_signs(&mut vectors);
    Ok(Eigenpairs { values, vectors })
}

/// Flip each eigenvector so that its largest-magnitude entry is positive: the same output for
/// the same input, whatever sign the solver returned.
fn canonical_signs(vectors: &mut Array2<f64>) {
    for mut col in vectors.columns_mut() {
        let pivot =
            col.iter().copied().fold(
                0.0f64,
                |acc, v| if v.abs() > acc.abs() + 1e-12 { v } else { acc },
            );
        if pivot < 0.0 {
            col.mapv_inplace(|v| -v);
        }
    }
}

/// Gaps between consecutive eigenvalues.
pub fn gaps(values: &[f64]) -> Vec<f64> {
    values.windows(2).map(|w| w[1] - w[0]).collect()
}

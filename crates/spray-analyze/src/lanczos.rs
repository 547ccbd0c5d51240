//! The smallest eigenpairs of a sparse symmetric matrix, solved per connected component:
//! dense for small components, Chebyshev-filtered subspace iteration ([`crate::chebyshev`],
//! the default) or Lanczos with full reorthogonalisation (below) for large ones.
//!
//! Why per component: a graph with c components has c exactly repeated zero eigenvalues of
//! L_sym, and a single-vector Krylov method sees only one direction of a repeated eigenspace.
//! Components are found first (union–find); each one's matrix has a simple zero eigenvalue.
//! Other exact repeats (duplicate samples make symmetric graphs) are caught by *deflation*:
//! after convergence, Lanczos is restarted from a fresh vector orthogonal to everything found,
//! and any eigenvalue it finds below the current m-th is added, until a restart finds none.
//!
//! Small components are solved densely (nalgebra): their cost is negligible and it keeps
//! isolated vertices and tiny cliques exact.
//!
//! Cost: O(nnz · j + n · j²) for a Krylov dimension j (typically 3m–10m), memory n · j floats;
//! no n × n matrix above the dense limit.

use ndarray16::Array2;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::graph::SparseSymmetric;

/// Components up to this many vertices (or up to 4m) are solved densely.
const DENSE_COMPONENT: usize = 300;
/// Relative residual for a Ritz pair to count as converged: ‖A v − θ v‖ ≤ TOL · ‖A‖.
const TOL: f64 = 1e-10;
/// Deflated restarts looking for eigenvalues the previous runs missed.
const MAX_DEFLATIONS: usize = 4;

/// Connected components of the matrix's off-diagonal pattern, each sorted, ordered by their
/// smallest vertex (deterministic).
pub fn components(a: &SparseSymmetric) -> Vec<Vec<usize>> {
    let n = a.n;
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for i in 0..n {
        for (j, v) in a.row(i) {
            if j != i && v != 0.0 {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
    }
    let mut index_of_root = vec![usize::MAX; n];
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        if index_of_root[r] == usize::MAX {
            index_of_root[r] = out.len();
            out.push(Vec::new());
        }
        out[index_of_root[r]].push(i);
    }
    out
}

/// The submatrix on `vertices` (sorted), in local indices.
fn submatrix(a: &SparseSymmetric, vertices: &[usize]) -> SparseSymmetric {
    let mut local = vec![usize::MAX; a.n];
    for (l, &g) in vertices.iter().enumerate() {
        local[g] = l;
    }
    let mut triplets = Vec::new();
    for (l, &g) in vertices.iter().enumerate() {
        for (j, v) in a.row(g) {
            if local[j] != usize::MAX {
                triplets.push((l, local[j], v));
            }
        }
    }
    SparseSymmetric::from_triplets(vertices.len(), triplets)
}

fn matvec(a: &SparseSymmetric, x: &[f64], y: &mut [f64]) {
    for (i, yi) in y.iter_mut().enumerate() {
        let mut s = 0.0;
        for p in a.row_ptr[i]..a.row_ptr[i + 1] {
            s += a.values[p] * x[a.cols[p]];
        }
        *yi = s;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Rows per block of the parallel Gram–Schmidt pass: the block's partial dot products are
/// summed in block order, so the result does not depend on the thread count.
const ORTHO_BLOCK: usize = 2048;

/// One classical Gram–Schmidt pass, v −= Q (Qᵀ v), over row blocks in parallel: two streams
/// over the basis instead of the two per vector of the modified form.
fn gram_schmidt_pass(v: &mut [f64], basis: &[Vec<f64>]) {
    if basis.is_empty() {
        return;
    }
    let partials: Vec<Vec<f64>> = v
        .par_chunks(ORTHO_BLOCK)
        .enumerate()
        .map(|(b, vb)| {
            let start = b * ORTHO_BLOCK;
            basis
                .iter()
                .map(|q| dot(vb, &q[start..start + vb.len()]))
                .collect()
        })
        .collect();
    let mut c = vec![0.0; basis.len()];
    for p in &partials {
        c.iter_mut().zip(p).for_each(|(x, y)| *x += y);
    }
    v.par_chunks_mut(ORTHO_BLOCK)
        .enumerate()
        .for_each(|(b, vb)| {
            let (start, len) = (b * ORTHO_BLOCK, vb.len());
            for (q, &ck) in basis.iter().zip(&c) {
                vb.iter_mut()
                    .zip(&q[start..start + len])
                    .for_each(|(x, y)| *x -= ck * y);
            }
        });
}

/// Remove the components along `basis` (orthonormal) from `v`: classical Gram–Schmidt, and a
/// second pass when the first removed more than 1 − 1/√2 of v's norm (the Kahan–Parlett
/// "twice is enough" test). The Lanczos loop applies this to w and once more to the
/// normalised vector: dropping that second application (with CGS2 on w) was tried and lost
/// orthogonality over hundreds of steps (wrong eigenvalues; the SciPy/dense agreement test
/// caught it).
fn orthogonalise(v: &mut [f64], basis: &[Vec<f64>]) {
    for _ in 0..2 {
        let before = norm(v);
        gram_schmidt_pass(v, basis);
        if norm(v) > std::f64::consts::FRAC_1_SQRT_2 * before {
            break;
        }
    }
}

/// A random unit vector orthogonal to `basis`, or `None` when `basis` spans everything.
fn fresh_vector(n: usize, basis: &[Vec<f64>], rng: &mut impl Rng) -> Option<Vec<f64>> {
    for _ in 0..3 {
        let mut v: Vec<f64> = (0..n).map(|_| rng.gen::<f64>() - 0.5).collect();
        orthogonalise(&mut v, basis);
        let nv = norm(&v);
        if nv > 1e-8 {
            v.iter_mut().for_each(|x| *x /= nv);
            return Some(v);
        }
    }
    None
}

/// Eigenpairs (ascending) of the Lanczos tridiagonal T (alpha diagonal, beta off-diagonal).
fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> (Vec<f64>, nalgebra::DMatrix<f64>) {
    let j = alpha.len();
    let mut t = nalgebra::DMatrix::<f64>::zeros(j, j);
    for i in 0..j {
        t[(i, i)] = alpha[i];
        if i + 1 < j {
            t[(i, i + 1)] = beta[i];
            t[(i + 1, i)] = beta[i];
        }
    }
    let eig = nalgebra::SymmetricEigen::new(t);
    let mut order: Vec<usize> = (0..j).collect();
    order.sort_by(|&a, &b| {
        eig.eigenvalues[a]
            .total_cmp(&eig.eigenvalues[b])
            .then(a.cmp(&b))
    });
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let vectors = nalgebra::DMatrix::from_fn(j, j, |r, c| eig.eigenvectors[(r, order[c])]);
    (values, vectors)
}

/// The `m` smallest eigenpairs of `a` restricted to the complement of `known` (orthonormal
/// vectors already found), by Lanczos with full reorthogonalisation from a seeded start.
/// At most `max_dim` Krylov vectors: when that is reached before convergence, only the pairs
/// that have converged are returned.
fn lanczos_smallest(
    a: &SparseSymmetric,
    m: usize,
    known: &[Vec<f64>],
    scale: f64,
    max_dim: usize,
    rng: &mut impl Rng,
) -> Vec<(f64, Vec<f64>)> {
    let n = a.n;
    let room = n.saturating_sub(known.len());
    let limit = max_dim.min(room);
    let m = m.min(room);
    if m == 0 {
        return Vec::new();
    }
    let Some(mut q) = fresh_vector(n, known, rng) else {
        return Vec::new();
    };
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut w = vec![0.0; n];
    let mut next_check = (3 * m + 10).min(limit);
    loop {
        matvec(a, &q, &mut w);
        let a_j = dot(&w, &q);
        alpha.push(a_j);
        basis.push(q);
        // Full reorthogonalisation against the Krylov basis and the deflated vectors
        // subsumes the three-term recurrence.
        orthogonalise(&mut w, known);
        orthogonalise(&mut w, &basis);
        let b_j = norm(&w);
        let j = basis.len();
        let exhausted = j >= room;
        let out_of_budget = j >= limit;
        let (values, vectors) = if j >= next_check || out_of_budget || b_j <= 1e-12 * scale {
            tridiagonal_eigen(&alpha, &beta)
        } else {
            (Vec::new(), nalgebra::DMatrix::zeros(0, 0))
        };
        if !values.is_empty() {
            let wanted = m.min(j);
            let ok = |c: usize| (b_j * vectors[(j - 1, c)]).abs() <= TOL * scale;
            let converged = (0..wanted).all(ok);
            if (converged && wanted == m) || out_of_budget {
                // Out of budget (not exhausted): keep the leading converged pairs only.
                let keep = if exhausted {
                    wanted
                } else {
                    (0..wanted).take_while(|&c| ok(c)).count()
                };
                return (0..keep)
                    .map(|c| {
                        let mut v = vec![0.0; n];
                        for (k, qk) in basis.iter().enumerate() {
                            let s = vectors[(k, c)];
                            v.iter_mut().zip(qk).for_each(|(x, y)| *x += s * y);
                        }
                        let nv = norm(&v);
                        v.iter_mut().for_each(|x| *x /= nv);
                        (values[c], v)
                    })
                    .collect();
            }
            next_check = (j + j / 4 + 5).min(limit);
        }
        if b_j <= 1e-12 * scale {
            // Invariant subspace: continue the Krylov process from a fresh direction (the
            // tridiagonal becomes block diagonal, β = 0 between the blocks).
            let mut all = known.to_vec();
            all.extend(basis.iter().cloned());
            match fresh_vector(n, &all, rng) {
                Some(v) => q = v,
                None => return Vec::new(),
            }
            beta.push(0.0);
        } else {
            // Once more on the normalised vector: dividing by β magnifies what rounding left
            // of the earlier directions.
            q = w.iter().map(|x| x / b_j).collect();
            orthogonalise(&mut q, known);
            orthogonalise(&mut q, &basis);
            let nq = norm(&q);
            q.iter_mut().for_each(|x| *x /= nq);
            beta.push(b_j);
        }
    }
}

/// Eigenpairs (value, vector) of one component.
type EigenPairs = Vec<(f64, Vec<f64>)>;

/// Gershgorin bound on ‖A‖: the scale residuals are measured against.
fn norm_bound(a: &SparseSymmetric) -> f64 {
    (0..a.n)
        .map(|i| a.row(i).map(|(_, v)| v.abs()).sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-300)
}

/// The m smallest eigenpairs of one connected matrix: Lanczos, then deflated restarts until
/// none finds an eigenvalue below the m-th (a missed copy of a repeated eigenvalue).
fn component_smallest(a: &SparseSymmetric, m: usize, seed: u64) -> Vec<(f64, Vec<f64>)> {
    let scale = norm_bound(a);
    let mut rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(seed);
    let mut found = lanczos_smallest(a, m, &[], scale, a.n, &mut rng);
    for _ in 0..MAX_DEFLATIONS {
        if found.len() < m.min(a.n) {
            break;
        }
        let known: Vec<Vec<f64>> = found.iter().map(|p| p.1.clone()).collect();
        let threshold = found.last().map_or(f64::INFINITY, |p| p.0);
        // A short run: a missed copy of a repeated eigenvalue converges at once in the
        // deflated space (its Krylov space is tiny); only converged pairs count.
        let budget = 4 * m + 40;
        let extra: Vec<(f64, Vec<f64>)> = lanczos_smallest(a, 1, &known, scale, budget, &mut rng)
            .into_iter()
            .filter(|p| p.0 < threshold - TOL * scale)
            .collect();
        if extra.is_empty() {
            break;
        }
        found.extend(extra);
        found.sort_by(|x, y| x.0.total_cmp(&y.0));
        found.truncate(m);
    }
    found
}

/// The m smallest eigenpairs of one component above the dense limit, by the chosen solver.
fn large_component(a: &SparseSymmetric, m: usize, seed: u64, how: LargeComponents) -> EigenPairs {
    if how == LargeComponents::Filtered {
        let settings = crate::chebyshev::FilterSettings::for_pairs(m);
        let (pairs, report) = crate::chebyshev::smallest(a, m, norm_bound(a), &settings, seed);
        tracing::debug!(n = a.n, m, ?report, "filtered subspace iteration");
        if report.converged < m {
            tracing::warn!(
                n = a.n,
                m,
                converged = report.converged,
                "eigenpairs: only the leading {} of {m} reached the tolerance",
                report.converged
            );
        }
        pairs
    } else {
        component_smallest(a, m, seed)
    }
}

/// The m smallest eigenpairs of a symmetric matrix, per connected component (dense for small
/// components, Chebyshev-filtered subspace iteration for large ones; [`smallest_with`] picks
/// Lanczos instead), merged in ascending order; eigenvectors are zero
/// outside their component.
///
/// With c components, most contribute only a few of the m smallest: each large component is
/// first asked for about 2m/c pairs, and asked again for twice as many only while all of its
/// pairs make the cut (so it may hold more below the m-th value).
pub fn smallest(a: &SparseSymmetric, m: usize, seed: u64) -> (Vec<f64>, Array2<f64>) {
    smallest_with(a, m, seed, LargeComponents::Filtered)
}

/// Which iterative solver a component above the dense limit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeComponents {
    /// Lanczos with full reorthogonalisation (memory n · j for a Krylov dimension j).
    Lanczos,
    /// Chebyshev-filtered subspace iteration ([`crate::chebyshev`], memory 4 · n · 2m).
    Filtered,
}

/// [`smallest`] with the solver for large components chosen by the caller.
pub fn smallest_with(
    a: &SparseSymmetric,
    m: usize,
    seed: u64,
    large: LargeComponents,
) -> (Vec<f64>, Array2<f64>) {
    let n = a.n;
    let m = m.min(n);
    let comps = components(a);
    // A component that spans every vertex is the matrix itself: no copy (at 1.28M vertices
    // the copy would be ~0.5 GB during the solve).
    let subs: Vec<std::borrow::Cow<'_, SparseSymmetric>> = if comps.len() == 1 {
        vec![std::borrow::Cow::Borrowed(a)]
    } else {
        comps
            .iter()
            .map(|v| std::borrow::Cow::Owned(submatrix(a, v)))
            .collect()
    };
    let first_ask = (2 * m).div_ceil(comps.len().max(1)).max(2);
    // Per component: its pairs so far, and whether it may hold more below the cut.
    let mut found: Vec<EigenPairs> = Vec::with_capacity(comps.len());
    let mut asked: Vec<usize> = Vec::with_capacity(comps.len());
    // Components are independent (and seeded by their index): solved side by side.
    let first: Vec<(EigenPairs, usize)> = subs
        .par_iter()
        .enumerate()
        .map(|(c, sub)| {
            let size = sub.n;
            if size <= DENSE_COMPONENT.max(4 * m) {
                let want = m.min(size);
                let dense = crate::eigen::dense_unsigned(sub, want);
                let pairs = (0..dense.values.len())
                    .map(|k| (dense.values[k], dense.vectors.column(k).to_vec()))
                    .collect();
                (pairs, want)
            } else {
                let want = first_ask.min(m).min(size);
                (
                    large_component(sub, want, seed ^ (c as u64 + 1), large),
                    want,
                )
            }
        })
        .collect();
    for (pairs, want) in first {
        found.push(pairs);
        asked.push(want);
    }
    loop {
        let mut all: Vec<(f64, usize)> = found
            .iter()
            .enumerate()
            .flat_map(|(c, pairs)| pairs.iter().map(move |p| (p.0, c)))
            .collect();
        all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let cut = all.get(m.saturating_sub(1)).map_or(f64::INFINITY, |p| p.0);
        let short: Vec<usize> = (0..comps.len())
            .filter(|&c| {
                asked[c] < m.min(subs[c].n)
                    && found[c].len() >= asked[c]
                    && found[c].last().is_none_or(|p| p.0 <= cut)
            })
            .collect();
        if short.is_empty() {
            break;
        }
        for &c in &short {
            asked[c] = (2 * asked[c]).min(m).min(subs[c].n);
        }
        let again: Vec<EigenPairs> = short
            .par_iter()
            .map(|&c| large_component(&subs[c], asked[c], seed ^ (c as u64 + 1), large))
            .collect();
        for (c, pairs) in short.into_iter().zip(again) {
            found[c] = pairs;
        }
    }
    let mut pairs: Vec<(f64, usize, Vec<f64>)> = found
        .into_iter()
        .enumerate()
        .flat_map(|(c, pairs)| pairs.into_iter().map(move |(v, x)| (v, c, x)))
        .collect();
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    pairs.truncate(m);
    let mut vectors = Array2::zeros((n, pairs.len()));
    let mut values = Vec::with_capacity(pairs.len());
    for (col, (value, c, v)) in pairs.into_iter().enumerate() {
        values.push(value);
        for (l, &g) in comps[c].iter().enumerate() {
            vectors[[g, col]] = v[l];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path graphs' Laplacians have known spectra: 2 − 2cos(πk/n), k = 0..n−1.
    fn path_laplacian(n: usize, offset: usize, triplets: &mut Vec<(usize, usize, f64)>) {
        for i in 0..n {
            let deg = if i == 0 || i + 1 == n { 1.0 } else { 2.0 };
            triplets.push((offset + i, offset + i, deg));
            if i + 1 < n {
                triplets.push((offset + i, offset + i + 1, -1.0));
                triplets.push((offset + i + 1, offset + i, -1.0));
            }
        }
    }

    #[test]
    fn a_long_path_matches_its_closed_form_spectrum() {
        let n = 800;
        let mut t = Vec::new();
        path_laplacian(n, 0, &mut t);
        let a = SparseSymmetric::from_triplets(n, t);
        let (values, vectors) = smallest(&a, 8, 3);
        for (k, v) in values.iter().enumerate() {
            let exact = 2.0 - 2.0 * (std::f64::consts::PI * k as f64 / n as f64).cos();
            assert!((v - exact).abs() < 1e-9, "λ{k} = {v}, expected {exact}");
        }
        // A v = λ v
        for (c, &value) in values.iter().enumerate() {
            let v: Vec<f64> = vectors.column(c).to_vec();
            let mut av = vec![0.0; n];
            matvec(&a, &v, &mut av);
            let r: f64 = av
                .iter()
                .zip(&v)
                .map(|(x, y)| (x - value * y).powi(2))
                .sum();
            assert!(r.sqrt() < 1e-8, "residual {}", r.sqrt());
        }
    }

    #[test]
    fn components_and_exact_repeats_are_all_found() {
        // Three identical paths of 400 (each large enough for Lanczos): every eigenvalue
        // appears three times, zero included.
        let mut t = Vec::new();
        for c in 0..3 {
            path_laplacian(400, c * 400, &mut t);
        }
        let a = SparseSymmetric::from_triplets(1200, t);
        assert_eq!(components(&a).len(), 3);
        let (values, _) = smallest(&a, 7, 1);
        let exact = |k: usize| 2.0 - 2.0 * (std::f64::consts::PI * k as f64 / 400.0).cos();
        let want = [
            exact(0),
            exact(0),
            exact(0),
            exact(1),
            exact(1),
            exact(1),
            exact(2),
        ];
        for (v, w) in values.iter().zip(want) {
            assert!((v - w).abs() < 1e-9, "{values:?}");
        }
    }

    #[test]
    fn a_repeated_eigenvalue_inside_one_component_is_found_by_deflation() {
        // A star of 400 leaves: the Laplacian has eigenvalue 1 with multiplicity 399.
        let n = 401;
        let mut t = vec![(0, 0, 400.0)];
        for leaf in 1..n {
            t.extend([(0, leaf, -1.0), (leaf, 0, -1.0), (leaf, leaf, 1.0)]);
        }
        let a = SparseSymmetric::from_triplets(n, t);
        let (values, _) = smallest(&a, 5, 9);
        assert!(values[0].abs() < 1e-9, "{values:?}");
        for v in &values[1..] {
            assert!((v - 1.0).abs() < 1e-9, "{values:?}");
        }
    }
}

//! t-SNE (van der Maaten & Hinton 2008; Barnes–Hut: van der Maaten 2014), written for
//! determinism under parallelism.
//!
//! Why our own and not a crate: the parallel t-SNE crates reduce their sums (the embedding's
//! mean, the normaliser of P) with rayon's adaptive splitting, whose grouping of a float sum
//! depends on which worker stole what — and t-SNE is chaotic enough that a last-bit difference
//! becomes a visibly different map after a few hundred iterations. Here every point's forces
//! are computed on their own (parallel over points, each with a fixed sequence of operations)
//! and every sum over points runs in a fixed order on one thread, so **any thread count gives
//! byte-identical coordinates**.
//!
//! Pieces: [`InputAffinities`] (the symmetric P from a neighbour table, perplexity-calibrated),
//! [`optimize`] (gradient descent with gains and momentum, early exaggeration; repulsion exact
//! or by a Barnes–Hut quadtree), [`kl_divergence`] (the exact cost, O(n²), for benches and
//! tests).

use rayon::prelude::*;

/// The symmetric input similarities P (CSR, Σ p_ij = 1, zero diagonal).
#[derive(Debug, Clone)]
pub struct InputAffinities {
    offsets: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f64>,
}

impl InputAffinities {
    /// Gaussian conditional similarities p_{j|i} ∝ exp(−β_i d_ij²) over each row of
    /// `neighbors` (`(j, d_ij)`), β_i found by bisection so that the row's perplexity is
    /// `perplexity`; then P = (P_{·|·} + its transpose) / 2n.
    pub fn from_neighbors(neighbors: &[Vec<(usize, f64)>], perplexity: f64) -> InputAffinities {
        let n = neighbors.len();
        let conditional: Vec<Vec<f64>> = neighbors
            .par_iter()
            .map(|row| calibrated_row(row, perplexity))
            .collect();
        // Sized exactly: grown by doubling it would reach twice its size at 1.28M points.
        let entries: usize = neighbors.iter().map(Vec::len).sum();
        let mut triplets: Vec<(u32, u32, f64)> = Vec::with_capacity(2 * entries);
        for (i, (row, p)) in neighbors.iter().zip(&conditional).enumerate() {
            for (&(j, _), &v) in row.iter().zip(p) {
                if j != i && j < n && v > 0.0 {
                    triplets.push((i as u32, j as u32, v));
                    triplets.push((j as u32, i as u32, v));
                }
            }
        }
        // Sorting by (row, column) makes the merge order — and so the sums — fixed.
        triplets.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
        let scale = 1.0 / (2.0 * n.max(1) as f64);
        let mut offsets = vec![0usize; n + 1];
        let mut columns = Vec::with_capacity(triplets.len());
        let mut values: Vec<f64> = Vec::with_capacity(triplets.len());
        let mut last: Option<(u32, u32)> = None;
        for (i, j, v) in triplets {
            if last == Some((i, j)) {
                if let Some(x) = values.last_mut() {
                    *x += v * scale;
                }
                continue;
            }
            last = Some((i, j));
            offsets[i as usize + 1] += 1;
            columns.push(j);
            values.push(v * scale);
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        InputAffinities {
            offsets,
            columns,
            values,
        }
    }

    pub fn n(&self) -> usize {
        self.offsets.len() - 1
    }

    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.offsets[i]..self.offsets[i + 1];
        self.columns[r.clone()]
            .iter()
            .zip(&self.values[r])
            .map(|(&j, &v)| (j as usize, v))
    }

    pub fn sum(&self) -> f64 {
        self.values.iter().sum()
    }
}

/// One row's p_{j|i}, summing to 1 (all zero for an empty row).
fn calibrated_row(row: &[(usize, f64)], perplexity: f64) -> Vec<f64> {
    if row.is_empty() {
        return Vec::new();
    }
    // Shift by the smallest squared distance: p is unchanged and exp() cannot underflow to
    // all zeros.
    let d2: Vec<f64> = row.iter().map(|&(_, d)| d * d).collect();
    let d_min = d2.iter().copied().fold(f64::INFINITY, f64::min);
    let d2: Vec<f64> = d2.iter().map(|d| d - d_min).collect();
    let target = perplexity.max(1.0).ln();
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    let mut p = vec![0.0; row.len()];
    for _ in 0..200 {
        let mut sum = 0.0;
        let mut weighted = 0.0;
        for (pj, &d) in p.iter_mut().zip(&d2) {
            *pj = (-beta * d).exp();
            sum += *pj;
            weighted += d * *pj;
        }
        let entropy = sum.ln() + beta * weighted / sum;
        let diff = entropy - target;
        if diff.abs() < 1e-5 {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    let sum: f64 = p.iter().sum();
    if sum > 0.0 {
        p.iter_mut().for_each(|v| *v /= sum);
    }
    p
}

/// How the optimisation runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub epochs: usize,
    /// P is multiplied by this for the first `exaggeration_epochs` (momentum 0.5 there, 0.8
    /// after).
    pub exaggeration: f64,
    pub exaggeration_epochs: usize,
    pub learning_rate: f64,
    /// Barnes–Hut opening angle; `None` = exact repulsion (O(n²) per epoch).
    pub theta: Option<f64>,
}

/// Optimises the embedding from `init`; the result is centred.
pub fn optimize(p: &InputAffinities, init: &[[f64; 2]], schedule: &Schedule) -> Vec<[f64; 2]> {
    optimize_observed(p, init, schedule, &crate::progress::Silent)
}

/// [`optimize`], reporting its epochs to `progress`.
pub fn optimize_observed(
    p: &InputAffinities,
    init: &[[f64; 2]],
    schedule: &Schedule,
    progress: &dyn crate::progress::StepObserver,
) -> Vec<[f64; 2]> {
    let n = p.n();
    progress.start("t-SNE epochs", schedule.epochs as u64);
    assert_eq!(init.len(), n, "one start position per point");
    let mut y: Vec<[f64; 2]> = init.to_vec();
    let mut update = vec![[0.0f64; 2]; n];
    let mut gains = vec![[1.0f64; 2]; n];
    let mut attractive = vec![[0.0f64; 2]; n];
    let mut repulsive = vec![[0.0f64; 3]; n];
    let mut tree = QuadTree::default();
    let mut scratch = Vec::new();
    for epoch in 0..schedule.epochs {
        let exaggerating = epoch < schedule.exaggeration_epochs;
        let factor = if exaggerating {
            schedule.exaggeration
        } else {
            1.0
        };
        let momentum = if exaggerating { 0.5 } else { 0.8 };
        attractive_forces(p, &y, factor, &mut attractive);
        let z = match schedule.theta {
            Some(theta) => {
                tree.rebuild(&y);
                tree.repulsive_forces(theta, &mut scratch, &mut repulsive)
            }
            None => exact_repulsive_forces(&y, &mut repulsive),
        };
        let inv_z = if z > 0.0 { 1.0 / z } else { 0.0 };
        let lr = schedule.learning_rate;
        // Serial: a few flops per point, less than waking the pool costs at class size.
        y.iter_mut()
            .zip(update.iter_mut())
            .zip(gains.iter_mut())
            .zip(attractive.iter().zip(repulsive.iter()))
            .for_each(|(((yi, ui), gi), (a, r))| {
                for d in 0..2 {
                    let grad = a[d] - r[d] * inv_z;
                    // Delta-bar-delta gains (Jacobs 1988), as in every t-SNE since the first.
                    gi[d] = if (grad > 0.0) != (ui[d] > 0.0) {
                        gi[d] + 0.2
                    } else {
                        (gi[d] * 0.8).max(0.01)
                    };
                    ui[d] = momentum * ui[d] - lr * gi[d] * grad;
                    yi[d] += ui[d];
                }
            });
        centre(&mut y);
        progress.advance(1);
    }
    y
}

/// Σ_j p_ij (y_i − y_j) / (1 + ‖y_i − y_j‖²), times `factor`.
fn attractive_forces(p: &InputAffinities, y: &[[f64; 2]], factor: f64, out: &mut [[f64; 2]]) {
    let force = |(i, o): (usize, &mut [f64; 2])| {
        let mut f = [0.0, 0.0];
        for (j, pij) in p.row(i) {
            let dx = y[i][0] - y[j][0];
            let dy = y[i][1] - y[j][1];
            let w = pij * factor / (1.0 + dx * dx + dy * dy);
            f[0] += w * dx;
            f[1] += w * dy;
        }
        *o = f;
    };
    // Per point either way (the same result); the pool only pays off on large groups.
    if out.len() < PARALLEL_FROM {
        out.iter_mut().enumerate().for_each(force);
    } else {
        out.par_iter_mut().enumerate().for_each(force);
    }
}

/// Below this many points the attractive pass runs on the calling thread.
const PARALLEL_FROM: usize = 20_000;

/// Per point (Σ_j q̃_ij² (y_i − y_j), Σ_j q̃_ij) with q̃ = 1/(1 + d²), exactly; returns Z.
fn exact_repulsive_forces(y: &[[f64; 2]], out: &mut [[f64; 3]]) -> f64 {
    out.par_iter_mut().enumerate().for_each(|(i, o)| {
        let mut f = [0.0, 0.0, 0.0];
        for (j, yj) in y.iter().enumerate() {
            if j == i {
                continue;
            }
            let dx = y[i][0] - yj[0];
            let dy = y[i][1] - yj[1];
            let q = 1.0 / (1.0 + dx * dx + dy * dy);
            f[0] += q * q * dx;
            f[1] += q * q * dy;
            f[2] += q;
        }
        *o = f;
    });
    out.iter().map(|o| o[2]).sum()
}

fn centre(y: &mut [[f64; 2]]) {
    if y.is_empty() {
        return;
    }
    let mut mean = [0.0, 0.0];
    for p in y.iter() {
        mean[0] += p[0];
        mean[1] += p[1];
    }
    mean[0] /= y.len() as f64;
    mean[1] /= y.len() as f64;
    for p in y.iter_mut() {
        p[0] -= mean[0];
        p[1] -= mean[1];
    }
}

/// The exact KL(P‖Q) of an embedding (O(n²); for benches and tests).
pub fn kl_divergence(p: &InputAffinities, y: &[[f64; 2]]) -> f64 {
    let n = p.n();
    let z: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            y.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, yj)| {
                    let dx = y[i][0] - yj[0];
                    let dy = y[i][1] - yj[1];
                    1.0 / (1.0 + dx * dx + dy * dy)
                })
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    let mut kl = 0.0;
    for i in 0..n {
        for (j, pij) in p.row(i) {
            if pij > 0.0 {
                let dx = y[i][0] - y[j][0];
                let dy = y[i][1] - y[j][1];
                let q = 1.0 / (1.0 + dx * dx + dy * dy) / z;
                kl += pij * (pij / q).ln();
            }
        }
    }
    kl
}

/// Points per leaf: below this a cell's points interact with the query one by one, which is
/// cheaper than descending further (and exact).
const LEAF_POINTS: usize = 16;
/// Lanes of the leaf loop's accumulators.
const LANES: usize = 8;
/// Points handed to one parallel task in the force pass.
const CHUNK: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Centre of mass and number of points (f32: the force pass runs in single precision,
    /// twice the SIMD lanes; per-point sums are then added up in f64).
    com: [f32; 2],
    count: f32,
    /// Squared half side length of the cell: the opening test is half-width / distance < θ,
    /// the convention of van der Maaten's bhtsne (and scikit-learn, openTSNE) that θ = 0.5
    /// refers to.
    half_width_sq: f32,
    /// Children `first_child..first_child + children` (0 children = leaf holding
    /// `sorted[start..end]`).
    first_child: u32,
    children: u32,
    start: u32,
    end: u32,
}

/// A quadtree over Morton-sorted points, rebuilt every epoch into reused buffers.
#[derive(Debug, Default)]
struct QuadTree {
    nodes: Vec<Node>,
    /// (Morton code, point index), sorted: a cell is a contiguous run.
    keys: Vec<(u64, u32)>,
    /// Point positions in Morton order (cache-friendly leaves).
    sorted: Vec<[f64; 2]>,
    /// The same, single precision, one array per axis (leaf loops run 8 lanes wide).
    xs: Vec<f32>,
    ys: Vec<f32>,
    side: f64,
}

/// Interleaves the bits of two 32-bit integers (x in the even bits).
fn morton(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = v as u64;
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        v = (v | (v << 1)) & 0x5555_5555_5555_5555;
        v
    }
    spread(x) | (spread(y) << 1)
}

impl QuadTree {
    fn rebuild(&mut self, y: &[[f64; 2]]) {
        let n = y.len();
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in y {
            for d in 0..2 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        let side = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-12) * (1.0 + 1e-9);
        self.side = side;
        let scale = (u32::MAX as f64) / side;
        let code = |p: &[f64; 2]| {
            let qx = ((p[0] - lo[0]) * scale).clamp(0.0, u32::MAX as f64) as u32;
            let qy = ((p[1] - lo[1]) * scale).clamp(0.0, u32::MAX as f64) as u32;
            morton(qx, qy)
        };
        if self.keys.len() == n {
            // Points move little per epoch: re-coding them in last epoch's order leaves long
            // sorted runs, which the (adaptive, stable) sort merges in near-linear time.
            for key in self.keys.iter_mut() {
                key.0 = code(&y[key.1 as usize]);
            }
        } else {
            self.keys.clear();
            self.keys
                .extend(y.iter().enumerate().map(|(i, p)| (code(p), i as u32)));
        }
        // (code, index) pairs are unique: the order, and so the tree, is fixed.
        if n > 50_000 {
            self.keys.par_sort();
        } else {
            self.keys.sort();
        }
        self.sorted.clear();
        self.sorted
            .extend(self.keys.iter().map(|&(_, i)| y[i as usize]));
        self.xs.clear();
        self.xs.extend(self.sorted.iter().map(|p| p[0] as f32));
        self.ys.clear();
        self.ys.extend(self.sorted.iter().map(|p| p[1] as f32));
        self.nodes.clear();
        self.nodes.push(Node::default());
        if n > 0 {
            self.build(0, 0, n, 0);
        }
    }

    /// Fills node `at` for `sorted[start..end]`, the cell at `level` (side / 2^level);
    /// returns the sum of its points (for the parent's centre of mass).
    fn build(&mut self, at: usize, start: usize, end: usize, level: u32) -> [f64; 2] {
        let width = self.side / f64::powi(2.0, level as i32);
        let count = (end - start) as f64;
        let mut node = Node {
            half_width_sq: (width * width / 4.0) as f32,
            count: count as f32,
            start: start as u32,
            end: end as u32,
            ..Node::default()
        };
        if end - start <= LEAF_POINTS || level >= 31 {
            let mut sum = [0.0, 0.0];
            for p in &self.sorted[start..end] {
                sum[0] += p[0];
                sum[1] += p[1];
            }
            node.com = [(sum[0] / count) as f32, (sum[1] / count) as f32];
            self.nodes[at] = node;
            return sum;
        }
        // The two bits below this level's prefix choose the quadrant; cells are contiguous runs.
        let shift = 2 * (31 - level);
        let mut bounds = [start; 5];
        for (q, bound) in bounds.iter_mut().enumerate().skip(1).take(3) {
            let q = q as u64;
            *bound = start
                + self.keys[start..end].partition_point(|&(code, _)| ((code >> shift) & 3) < q);
        }
        bounds[4] = end;
        let mut filled = [(0usize, 0usize); 4];
        let mut children = 0;
        for q in 0..4 {
            if bounds[q + 1] > bounds[q] {
                filled[children] = (bounds[q], bounds[q + 1]);
                children += 1;
            }
        }
        if children == 1 {
            // All points in one quadrant: descend without a node of its own (the sub-cell
            // bounds every point too, and its smaller width lets a tight, far-away group be
            // summarised).
            return self.build(at, start, end, level + 1);
        }
        let first = self.nodes.len();
        self.nodes.resize(first + children, Node::default());
        let mut sum = [0.0, 0.0];
        for (c, &(a, b)) in filled[..children].iter().enumerate() {
            let s = self.build(first + c, a, b, level + 1);
            sum[0] += s[0];
            sum[1] += s[1];
        }
        node.com = [(sum[0] / count) as f32, (sum[1] / count) as f32];
        node.first_child = first as u32;
        node.children = children as u32;
        self.nodes[at] = node;
        sum
    }

    /// Barnes–Hut (Σ_j q̃² (y_i − y_j), Σ_j q̃) per point (`out` in the original order);
    /// returns Z = Σ_i Σ_j q̃_ij, summed in Morton order.
    /// `by_position` is scratch space kept between epochs.
    fn repulsive_forces(
        &self,
        theta: f64,
        by_position: &mut Vec<[f64; 3]>,
        out: &mut [[f64; 3]],
    ) -> f64 {
        let n = self.sorted.len();
        let theta_sq = theta * theta;
        by_position.resize(n, [0.0; 3]);
        by_position
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let mut stack: Vec<u32> = Vec::with_capacity(64);
                for (k, o) in chunk.iter_mut().enumerate() {
                    let pos = c * CHUNK + k;
                    *o = self.forces_on(pos, theta_sq, &mut stack);
                }
            });
        let mut z = 0.0;
        for (&(_, i), f) in self.keys.iter().zip(by_position.iter()) {
            out[i as usize] = *f;
            z += f[2];
        }
        z
    }

    fn forces_on(&self, pos: usize, theta_sq: f64, stack: &mut Vec<u32>) -> [f64; 3] {
        let theta_sq = theta_sq as f32;
        let (xi, yi) = (self.xs[pos], self.ys[pos]);
        // Lane-wise accumulators: the compiler vectorises the leaf loop without reordering any
        // float sum, so the result is the same on every machine.
        let mut fx = [0.0f32; LANES];
        let mut fy = [0.0f32; LANES];
        let mut fq = [0.0f32; LANES];
        let mut far = [0.0f64; 3];
        stack.clear();
        stack.push(0);
        while let Some(at) = stack.pop() {
            let node = &self.nodes[at as usize];
            let dx = xi - node.com[0];
            let dy = yi - node.com[1];
            let d_sq = dx * dx + dy * dy;
            let holds_query = (node.start as usize..node.end as usize).contains(&pos);
            if !holds_query && node.half_width_sq < theta_sq * d_sq {
                // Far enough: the whole cell acts as one point at its centre of mass. (A cell
                // holding the query is always opened, so its own term is exact: q = 1.)
                let q = 1.0 / (1.0 + d_sq);
                let m = node.count * q;
                far[0] += (m * q * dx) as f64;
                far[1] += (m * q * dy) as f64;
                far[2] += m as f64;
            } else if node.children == 0 {
                // Every point of the leaf, the query itself included (it adds q = 1 and no
                // force; taken off below).
                let (start, end) = (node.start as usize, node.end as usize);
                let xs = &self.xs[start..end];
                let ys = &self.ys[start..end];
                let mut cx = xs.chunks_exact(LANES);
                let mut cy = ys.chunks_exact(LANES);
                for (bx, by) in (&mut cx).zip(&mut cy) {
                    for l in 0..LANES {
                        let dx = xi - bx[l];
                        let dy = yi - by[l];
                        let q = 1.0 / (1.0 + dx * dx + dy * dy);
                        fx[l] += q * q * dx;
                        fy[l] += q * q * dy;
                        fq[l] += q;
                    }
                }
                for (l, (x, y)) in cx.remainder().iter().zip(cy.remainder()).enumerate() {
                    let dx = xi - x;
                    let dy = yi - y;
                    let q = 1.0 / (1.0 + dx * dx + dy * dy);
                    fx[l] += q * q * dx;
                    fy[l] += q * q * dy;
                    fq[l] += q;
                }
            } else {
                for c in (node.first_child..node.first_child + node.children).rev() {
                    stack.push(c);
                }
            }
        }
        let lanes = |v: &[f32; LANES]| v.iter().map(|&x| x as f64).sum::<f64>();
        [
            far[0] + lanes(&fx),
            far[1] + lanes(&fy),
            far[2] + lanes(&fq) - 1.0,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Vec<[f64; 2]> {
        (0..n)
            .map(|i| {
                let a = i as f64 * 2.399_963; // golden angle: spread, no repeats
                let r = (i as f64 + 0.5).sqrt();
                [r * a.cos(), r * a.sin()]
            })
            .collect()
    }

    #[test]
    fn perplexity_is_met_per_row() {
        let row: Vec<(usize, f64)> = (1..30).map(|j| (j, j as f64 * 0.3)).collect();
        let p = calibrated_row(&row, 7.0);
        let h: f64 = -p
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|v| v * v.ln())
            .sum::<f64>();
        assert!((h.exp() - 7.0).abs() < 1e-3, "perplexity {}", h.exp());
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn affinities_are_symmetric_and_sum_to_one() {
        // A neighbour table that is not symmetric (j in i's list, i not in j's).
        let n = 40;
        let neighbors: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| (1..6).map(|s| ((i + s * s) % n, s as f64)).collect())
            .collect();
        let p = InputAffinities::from_neighbors(&neighbors, 3.0);
        assert!((p.sum() - 1.0).abs() < 1e-12);
        for i in 0..n {
            for (j, v) in p.row(i) {
                let back = p.row(j).find(|&(k, _)| k == i).map(|x| x.1);
                assert_eq!(back, Some(v), "p[{i},{j}]");
                assert_ne!(i, j);
            }
        }
    }

    #[test]
    fn barnes_hut_forces_approach_the_exact_ones() {
        let y = ring(500);
        let mut exact = vec![[0.0; 3]; y.len()];
        let z_exact = exact_repulsive_forces(&y, &mut exact);
        let mut tree = QuadTree::default();
        tree.rebuild(&y);
        // θ bounds half-width / distance (bhtsne's convention). On a uniform disc, the hard
        // case (net forces are small differences of large ones), θ = 0.5 is off by 4 % on Z
        // and 15 % on the forces; smaller θ converges to exact.
        for (theta, z_tol, f_tol) in [(0.5, 5e-2, 0.2), (0.25, 1e-2, 2e-2), (0.05, 1e-6, 1e-5)] {
            let mut bh = vec![[0.0; 3]; y.len()];
            let z = tree.repulsive_forces(theta, &mut Vec::new(), &mut bh);
            assert!(
                (z - z_exact).abs() / z_exact < z_tol,
                "θ {theta}: Z {z} vs {z_exact}"
            );
            let err: f64 = bh
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a[0] - b[0]).hypot(a[1] - b[1]))
                .sum();
            let norm: f64 = exact.iter().map(|b| b[0].hypot(b[1])).sum();
            assert!(
                err / norm < f_tol,
                "θ {theta}: relative force error {}",
                err / norm
            );
        }
        // θ → 0 opens every cell: exact up to the force pass's single precision.
        let mut bh = vec![[0.0; 3]; y.len()];
        let z = tree.repulsive_forces(1e-9, &mut Vec::new(), &mut bh);
        assert!((z - z_exact).abs() / z_exact < 1e-6, "Z {z} vs {z_exact}");
    }

    #[test]
    fn coincident_points_do_not_break_the_tree() {
        let mut y = vec![[1.0, 1.0]; 50];
        y.extend(ring(50));
        let mut tree = QuadTree::default();
        tree.rebuild(&y);
        let mut out = vec![[0.0; 3]; y.len()];
        let z = tree.repulsive_forces(0.5, &mut Vec::new(), &mut out);
        assert!(z.is_finite() && z > 0.0);
        assert!(out.iter().all(|f| f.iter().all(|v| v.is_finite())));
    }

    fn two_blobs() -> (InputAffinities, Vec<[f64; 2]>) {
        // Two groups of 150: neighbours within the group only.
        let n = 300;
        let neighbors: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                let g = i / 150;
                (1..=15)
                    .map(|s| (g * 150 + (i % 150 + s * 7) % 150, 1.0 + s as f64 * 0.1))
                    .collect()
            })
            .collect();
        let p = InputAffinities::from_neighbors(&neighbors, 5.0);
        let init: Vec<[f64; 2]> = ring(n).iter().map(|p| [p[0] * 1e-3, p[1] * 1e-3]).collect();
        (p, init)
    }

    #[test]
    fn optimisation_lowers_the_cost_and_separates_the_groups() {
        let (p, init) = two_blobs();
        let schedule = Schedule {
            epochs: 400,
            exaggeration: 12.0,
            exaggeration_epochs: 125,
            learning_rate: 50.0,
            theta: Some(0.5),
        };
        let y = optimize(&p, &init, &schedule);
        assert!(kl_divergence(&p, &y) < 0.5 * kl_divergence(&p, &init));
        // Every point's nearest embedded neighbour is in its own group.
        for i in 0..y.len() {
            let nearest = (0..y.len())
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let da = (y[i][0] - y[a][0]).hypot(y[i][1] - y[a][1]);
                    let db = (y[i][0] - y[b][0]).hypot(y[i][1] - y[b][1]);
                    da.total_cmp(&db)
                })
                .unwrap_or(i);
            assert_eq!(nearest / 150, i / 150, "point {i}");
        }
    }

    #[test]
    fn any_thread_count_gives_the_same_coordinates() {
        let (p, init) = two_blobs();
        let schedule = Schedule {
            epochs: 150,
            exaggeration: 12.0,
            exaggeration_epochs: 50,
            learning_rate: 50.0,
            theta: Some(0.5),
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map(|pool| pool.install(|| optimize(&p, &init, &schedule)))
                .unwrap_or_default()
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(4));
    }
}

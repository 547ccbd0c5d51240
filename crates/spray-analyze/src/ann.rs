//! Approximate k nearest neighbours for large groups: random-projection trees to start, then
//! NN-descent (Dong, Charikar & Li 2011: a neighbour of a neighbour is likely a neighbour).
//!
//! Why not an HNSW crate: the ones measured insert in parallel in an order that depends on
//! scheduling, so the graph — and every cluster downstream — changes run to run
//! (`../shared/notes/dependencies.md`). Here every step gives the same result on any number
//! of threads:
//! - the trees and the samples of each round are drawn from seeded hashes, not a shared RNG;
//! - a neighbour list keeps the k best candidates by (distance, index), a total order, so
//!   the list after a round depends only on the *set* of candidates offered to it, not on the
//!   order in which threads offered them (each list is behind its own lock);
//! - the stopping rule counts list changes against the start of the round.
//!
//! Cost per round O(n · (ρk)² · d) distance work, memory O(n · k); never n × n.

use std::sync::Mutex;

use ndarray16::ArrayView2;
use rayon::prelude::*;

use crate::graph::{exactly_ranked, locked, unlocked, KnnTable};

/// How the approximate search runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NnDescentSettings {
    /// Random-projection trees for the start lists.
    pub trees: usize,
    /// Points per tree leaf (every pair in a leaf is a candidate).
    pub leaf_size: usize,
    /// At most this many rounds of NN-descent.
    pub max_rounds: usize,
    /// Share of each list sampled into a round's local join (ρ).
    pub sample_rate: f64,
    /// Stop when a round changes fewer than delta · n · k list entries.
    pub delta: f64,
    pub seed: u64,
}

impl Default for NnDescentSettings {
    fn default() -> Self {
        NnDescentSettings {
            trees: 8,
            leaf_size: 48,
            max_rounds: 12,
            sample_rate: 0.6,
            delta: 1e-3,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    dist: f32,
    index: u32,
    /// Entered the list since it was last sampled for a local join.
    fresh: bool,
}

/// The k best candidates seen by one point, ascending by (distance, index).
#[derive(Debug, Clone, Default)]
struct NeighborList {
    entries: Vec<Entry>,
}

impl NeighborList {
    /// Offers a candidate; true when the list changed.
    fn offer(&mut self, index: u32, dist: f32, k: usize) -> bool {
        // (distance, index) in a total order: the kept set does not depend on offer order.
        let order = |e: &Entry| e.dist.total_cmp(&dist).then(e.index.cmp(&index));
        if self.entries.len() == k {
            if let Some(last) = self.entries.last() {
                if order(last).is_le() {
                    return false;
                }
            }
        }
        if self.entries.iter().any(|e| e.index == index) {
            return false;
        }
        let at = self.entries.partition_point(|e| order(e).is_lt());
        self.entries.insert(
            at,
            Entry {
                dist,
                index,
                fresh: true,
            },
        );
        self.entries.truncate(k);
        true
    }
}

/// SplitMix64: the seeded hash every random choice here is drawn from.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Squared Euclidean distance, in lanes the compiler vectorises (fixed summation order).
fn dist_sq(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..L {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let d = x - y;
        acc[l] += d * d;
    }
    acc.iter().sum()
}

/// Approximate kNN table (same contract as [`crate::graph::knn`]: k nearest *other* points
/// per row, ascending by (distance, index), f64 Euclidean distances).
pub fn knn(points: ArrayView2<'_, f32>, k: usize, settings: &NnDescentSettings) -> KnnTable {
    knn_observed(points, k, settings, &crate::progress::Silent)
}

/// [`knn`], reporting its trees and rounds to `progress` (the rounds may end early).
pub fn knn_observed(
    points: ArrayView2<'_, f32>,
    k: usize,
    settings: &NnDescentSettings,
    progress: &dyn crate::progress::StepObserver,
) -> KnnTable {
    let n = points.nrows();
    let k = k.min(n.saturating_sub(1));
    if k == 0 || n <= settings.leaf_size.max(k + 1) {
        return crate::graph::knn(points, k);
    }
    let owned = (!points.is_standard_layout()).then(|| points.to_owned());
    let points = owned.as_ref().map_or_else(|| points.view(), |o| o.view());
    let rows = row_slices(points);
    let lists = Lists::new(n, k);

    progress.start(
        "kNN search (NN-descent: trees, then rounds)",
        (settings.trees + settings.max_rounds) as u64,
    );
    lists.start_from_trees(&rows, settings, progress);
    lists.fill_short(&rows, settings.seed);
    let sample = ((settings.sample_rate * k as f64).ceil() as usize).max(1);
    for round in 0..settings.max_rounds {
        let replaced = lists.descend(&rows, round, sample, settings.seed);
        progress.advance(1);
        if (replaced as f64) < settings.delta * (n * k) as f64 {
            break;
        }
    }
    lists.into_table(points)
}

/// One list's entries at the start of a round: the fresh and old entries sampled for the
/// local join, and every entry.
struct Sampled {
    fresh: Vec<u32>,
    old: Vec<u32>,
    members: Vec<u32>,
}

/// The k best candidates of every point, each list behind its own lock.
struct Lists {
    lists: Vec<Mutex<NeighborList>>,
    k: usize,
}

impl Lists {
    fn new(n: usize, k: usize) -> Lists {
        Lists {
            lists: (0..n)
                .map(|_| {
                    Mutex::new(NeighborList {
                        entries: Vec::with_capacity(k + 1),
                    })
                })
                .collect(),
            k,
        }
    }

    /// Offers `j` at squared distance `d` to `i`'s list; true when the list changed.
    fn offer(&self, i: usize, j: usize, d: f32) -> bool {
        locked(&self.lists[i]).offer(j as u32, d, self.k)
    }

    /// Start: every pair within a leaf of each random-projection tree.
    fn start_from_trees(
        &self,
        rows: &[&[f32]],
        settings: &NnDescentSettings,
        progress: &dyn crate::progress::StepObserver,
    ) {
        let n = self.lists.len();
        (0..settings.trees).into_par_iter().for_each(|t| {
            let mut leaves = Vec::new();
            let all: Vec<u32> = (0..n as u32).collect();
            split(
                rows,
                all,
                settings.leaf_size.max(self.k + 1),
                mix(settings.seed ^ mix(t as u64 + 1)),
                &mut leaves,
            );
            leaves.par_iter().for_each(|leaf| {
                for (a, &i) in leaf.iter().enumerate() {
                    for &j in &leaf[a + 1..] {
                        let d = dist_sq(rows[i as usize], rows[j as usize]);
                        self.offer(i as usize, j as usize, d);
                        self.offer(j as usize, i as usize, d);
                    }
                }
            });
            progress.advance(1);
        });
    }

    /// A point no leaf paired (cannot happen with leaves of ≥ k + 1, kept for safety): fill
    /// with hashed random points so every list is full.
    fn fill_short(&self, rows: &[&[f32]], seed: u64) {
        let n = self.lists.len();
        (0..n).into_par_iter().for_each(|i| {
            let mut r = 0u64;
            while locked(&self.lists[i]).entries.len() < self.k {
                let j = (mix(seed ^ mix(i as u64) ^ r) % n as u64) as usize;
                r += 1;
                if j != i {
                    self.offer(i, j, dist_sq(rows[i], rows[j]));
                }
            }
        });
    }

    /// One round of NN-descent: the local join of every point's sampled neighbours and
    /// reverse neighbours. Returns the entries now in the lists that were not at the round's
    /// start.
    fn descend(&self, rows: &[&[f32]], round: usize, sample: usize, seed: u64) -> usize {
        let n = self.lists.len();
        let key = |i: usize, j: u32| round_key(seed, round, i, j);
        let sampled = self.sample(sample, key);
        let mut reverse_fresh: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut reverse_old: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, s) in sampled.iter().enumerate() {
            for &j in &s.fresh {
                reverse_fresh[j as usize].push(i as u32);
            }
            for &j in &s.old {
                reverse_old[j as usize].push(i as u32);
            }
        }
        // A point's own sampled entries plus a hashed sample of those that list it.
        let joined = |v: usize, own: &[u32], reverse: &[u32]| -> Vec<u32> {
            let mut rev = reverse.to_vec();
            rev.sort_by_key(|&j| (key(v, j), j));
            rev.truncate(sample);
            let mut all = own.to_vec();
            all.extend(rev);
            all.sort_unstable();
            all.dedup();
            all
        };
        (0..n).into_par_iter().for_each(|v| {
            let fresh = joined(v, &sampled[v].fresh, &reverse_fresh[v]);
            let old = joined(v, &sampled[v].old, &reverse_old[v]);
            self.local_join(rows, &fresh, &old);
        });
        self.replaced_since(&sampled)
    }

    /// Samples each list's fresh and old entries (fresh ones sampled become old) by seeded
    /// hash order.
    fn sample(&self, sample: usize, key: impl Fn(usize, u32) -> u64 + Sync) -> Vec<Sampled> {
        self.lists
            .par_iter()
            .enumerate()
            .map(|(i, l)| {
                let mut l = locked(l);
                let mut fresh: Vec<u32> = l
                    .entries
                    .iter()
                    .filter(|e| e.fresh)
                    .map(|e| e.index)
                    .collect();
                fresh.sort_by_key(|&j| (key(i, j), j));
                fresh.truncate(sample);
                for e in l.entries.iter_mut() {
                    if fresh.contains(&e.index) {
                        e.fresh = false;
                    }
                }
                let old: Vec<u32> = l
                    .entries
                    .iter()
                    .filter(|e| !e.fresh && !fresh.contains(&e.index))
                    .map(|e| e.index)
                    .collect();
                let members: Vec<u32> = l.entries.iter().map(|e| e.index).collect();
                Sampled {
                    fresh,
                    old,
                    members,
                }
            })
            .collect()
    }

    /// Offers every fresh–fresh and fresh–old pair to both of its points.
    fn local_join(&self, rows: &[&[f32]], fresh: &[u32], old: &[u32]) {
        for (a, &p) in fresh.iter().enumerate() {
            let (p, rp) = (p as usize, rows[p as usize]);
            for &q in fresh[a + 1..].iter().chain(old.iter()) {
                let q = q as usize;
                if q == p {
                    continue;
                }
                let d = dist_sq(rp, rows[q]);
                self.offer(p, q, d);
                self.offer(q, p, d);
            }
        }
    }

    /// The stopping rule counts entries not in the list at the round's start (the number of
    /// accepted offers would depend on offer order).
    fn replaced_since(&self, sampled: &[Sampled]) -> usize {
        self.lists
            .par_iter()
            .zip(sampled)
            .map(|(l, s)| {
                locked(l)
                    .entries
                    .iter()
                    .filter(|e| !s.members.contains(&e.index))
                    .count()
            })
            .sum()
    }

    /// Exact f64 distances for the final lists, ordered as the exact search orders them.
    fn into_table(self, points: ArrayView2<'_, f32>) -> KnnTable {
        let k = self.k;
        let neighbors = self
            .lists
            .into_par_iter()
            .enumerate()
            .map(|(i, l)| {
                let entries = unlocked(l).entries;
                exactly_ranked(points, i, entries.iter().map(|e| e.index as usize), k)
            })
            .collect();
        KnnTable { k, neighbors }
    }
}

/// The hash that orders point `i`'s candidate `j` in round `round`.
fn round_key(seed: u64, round: usize, i: usize, j: u32) -> u64 {
    mix(seed ^ mix((round as u64) << 40 ^ (i as u64) << 20 ^ j as u64))
}

/// The rows of a standard-layout matrix as slices (for the lane-wise distance kernel).
fn row_slices(points: ArrayView2<'_, f32>) -> Vec<&[f32]> {
    points
        .to_slice()
        .map(|all| all.chunks_exact(points.ncols().max(1)).collect())
        .unwrap_or_default()
}

/// Splits `members` by random hyperplanes (the perpendicular bisector of two members) until
/// each part has at most `leaf` points.
fn split(rows: &[&[f32]], members: Vec<u32>, leaf: usize, seed: u64, out: &mut Vec<Vec<u32>>) {
    if members.len() <= leaf {
        out.push(members);
        return;
    }
    let m = members.len() as u64;
    let a = members[(mix(seed) % m) as usize] as usize;
    let mut b = members[(mix(seed ^ 1) % m) as usize] as usize;
    if b == a {
        b = members[((mix(seed ^ 1) + 1) % m) as usize] as usize;
    }
    let (ra, rb) = (rows[a], rows[b]);
    // side(x) = (x − (a+b)/2) · (a − b) = x·(a−b) − (|a|² − |b|²)/2
    let normal: Vec<f32> = ra.iter().zip(rb).map(|(x, y)| x - y).collect();
    let offset: f32 = ra.iter().zip(rb).map(|(x, y)| (x * x - y * y) * 0.5).sum();
    let (mut left, mut right): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for &i in &members {
        let s: f32 = rows[i as usize]
            .iter()
            .zip(&normal)
            .map(|(x, w)| x * w)
            .sum::<f32>()
            - offset;
        // Points on the plane (duplicates, a = b) go by hash so parts always shrink.
        let goes_left = if s == 0.0 {
            mix(seed ^ mix(i as u64)) & 1 == 0
        } else {
            s < 0.0
        };
        if goes_left {
            left.push(i);
        } else {
            right.push(i);
        }
    }
    if left.is_empty() || right.is_empty() {
        // A degenerate plane: halve by hash instead.
        let (l, r): (Vec<u32>, Vec<u32>) = members
            .iter()
            .partition(|&&i| mix(seed ^ 7 ^ mix(i as u64)) & 1 == 0);
        if l.is_empty() || r.is_empty() {
            let mid = members.len() / 2;
            out.push(members[..mid].to_vec());
            out.push(members[mid..].to_vec());
            return;
        }
        left = l;
        right = r;
    }
    split(rows, left, leaf, mix(seed ^ 2), out);
    split(rows, right, leaf, mix(seed ^ 3), out);
}

/// The share of each sampled row's exact k nearest that `table` holds (recall@k), with the
/// exact neighbours found by brute force for `queries` rows only.
pub fn recall_at_k(points: ArrayView2<'_, f32>, table: &KnnTable, queries: &[usize]) -> f64 {
    let n = points.nrows();
    let k = table.k;
    if k == 0 || queries.is_empty() {
        return 1.0;
    }
    let owned = (!points.is_standard_layout()).then(|| points.to_owned());
    let points = owned.as_ref().map_or_else(|| points.view(), |o| o.view());
    let rows = row_slices(points);
    let hits: usize = queries
        .par_iter()
        .map(|&i| {
            let mut d: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (dist_sq(rows[i], rows[j]), j))
                .collect();
            d.select_nth_unstable_by(k - 1, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let exact: std::collections::HashSet<usize> = d[..k].iter().map(|p| p.1).collect();
            table.neighbors[i]
                .iter()
                .filter(|(j, _)| exact.contains(j))
                .count()
        })
        .sum();
    hits as f64 / (queries.len() * k) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray16::Array2;

    /// Twenty Gaussian-ish groups in 32-d from a hashed generator (no RNG crate needed).
    fn data(n: usize, d: usize) -> Array2<f32> {
        let u = |i: u64| (mix(i) >> 11) as f32 / (1u64 << 53) as f32;
        Array2::from_shape_fn((n, d), |(i, j)| {
            let g = (i % 20) as u64;
            let centre = 4.0 * (u(g * 1000 + j as u64) - 0.5);
            // Sum of three uniforms: roughly normal noise.
            let noise: f32 = (0..3)
                .map(|r| u((i as u64) << 20 ^ (j as u64) << 4 ^ r) - 0.5)
                .sum();
            centre + noise
        })
    }

    #[test]
    fn recall_against_the_exact_search() {
        let x = data(4000, 32);
        let table = knn(x.view(), 10, &NnDescentSettings::default());
        let exact = crate::graph::knn(x.view(), 10);
        let mut hit = 0;
        for (a, e) in table.neighbors.iter().zip(&exact.neighbors) {
            assert_eq!(a.len(), 10);
            assert!(a.windows(2).all(|w| (w[0].1, w[0].0) <= (w[1].1, w[1].0)));
            hit += a.iter().filter(|p| e.iter().any(|q| q.0 == p.0)).count();
        }
        let recall = hit as f64 / (4000 * 10) as f64;
        assert!(recall > 0.95, "recall@10 {recall}");
        let sampled: Vec<usize> = (0..4000).step_by(37).collect();
        let estimate = recall_at_k(x.view(), &table, &sampled);
        assert!((estimate - recall).abs() < 0.05, "{estimate} vs {recall}");
    }

    #[test]
    fn any_thread_count_gives_the_same_table() {
        let x = data(1500, 16);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map(|pool| pool.install(|| knn(x.view(), 8, &NnDescentSettings::default())))
                .map(|t| t.neighbors)
                .unwrap_or_default()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
    }

    #[test]
    fn duplicate_points_are_handled() {
        let mut x = data(600, 8);
        for i in 0..200 {
            let first = x.row(0).to_owned();
            x.row_mut(i).assign(&first);
        }
        let table = knn(x.view(), 6, &NnDescentSettings::default());
        for (i, row) in table.neighbors.iter().enumerate() {
            assert_eq!(row.len(), 6);
            assert!(row.iter().all(|&(j, d)| j != i && d.is_finite()));
        }
    }
}

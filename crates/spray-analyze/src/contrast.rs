//! The contrast criterion: which cluster of a group stands apart from the rest, both as a cut
//! in the kNN graph and in how much relevance its maps carry (`ClusterContrast`).
//!
//! Why magnitude: LRP conserves relevance, so a map's total mass follows the model's evidence
//! for the class. A shortcut is an easy, strong cue: the images that carry it get a larger
//! logit and maps with more mass than the rest of their class, whether the artifact is a
//! compact tag or a frame spread thinly over the border (the per-map normalisation the graph
//! is built on throws that difference away). Natural modes of a class (object position,
//! background) move the relevance around without changing how much there is. The criterion
//! therefore weighs the cut by the shift of the mass: score = separation × (1 + |shift|).

pub use spray_store::analysis::ClusterContrast;

use crate::graph::KnnGraph;

/// Clusters smaller than this share of the group (or larger than 1 − it) are not considered:
/// a handful of samples can differ in mass by chance.
pub const MIN_CLUSTER_SHARE: f64 = 0.05;

/// The L1 mass of a map before any normalisation.
pub fn relevance_mass<'a>(map: impl IntoIterator<Item = &'a f32>) -> f64 {
    map.into_iter().map(|v| v.abs() as f64).sum()
}

/// Below this standard deviation of log mass (a relative spread of 10⁻⁶) the masses are
/// taken as equal: rounding in maps normalised upstream must not become a "shift".
const MIN_LOG_MASS_SD: f64 = 1e-6;

/// The standardised log masses of a group (all zero when the masses do not vary).
fn standardised_log(mass: &[f64]) -> Vec<f64> {
    let logs: Vec<f64> = mass
        .iter()
        .map(|&m| m.max(f64::MIN_POSITIVE).ln())
        .collect();
    let n = logs.len().max(1) as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let sd = (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd.is_nan() || sd <= MIN_LOG_MASS_SD {
        return vec![0.0; logs.len()];
    }
    logs.iter().map(|l| (l - mean) / sd).collect()
}

/// 1 − conductance of the cut between `inside` and the rest: cut weight over the smaller
/// volume. 1 = no edge leaves the set.
pub fn separation(graph: &KnnGraph, inside: &[bool]) -> f64 {
    let a = &graph.affinity;
    let (mut cut, mut vol_in, mut vol_out) = (0.0, 0.0, 0.0);
    for i in 0..a.n {
        for (j, w) in a.row(i) {
            if inside[i] {
                vol_in += w;
                if !inside[j] {
                    cut += w;
                }
            } else {
                vol_out += w;
            }
        }
    }
    let smaller = f64::min(vol_in, vol_out);
    if smaller <= 0.0 {
        return if cut > 0.0 { 0.0 } else { 1.0 };
    }
    (1.0 - cut / smaller).clamp(0.0, 1.0)
}

/// Every cluster of a group that is compared: its share, separation and mass shift
/// (`ClusterContrast`), by ascending label. Clusters below [`MIN_CLUSTER_SHARE`] of the
/// group, or above 1 − it, are left out; labels below zero (DBSCAN noise) belong to no cluster.
pub fn clusters(graph: &KnnGraph, labels: &[i32], mass: &[f64]) -> Vec<ClusterContrast> {
    let n = labels.len();
    let z = standardised_log(mass);
    let mut ids: Vec<i32> = labels.iter().copied().filter(|&l| l >= 0).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let inside: Vec<bool> = labels.iter().map(|&l| l == id).collect();
        let size = inside.iter().filter(|&&b| b).count();
        let share = size as f64 / n as f64;
        if !(MIN_CLUSTER_SHARE..=1.0 - MIN_CLUSTER_SHARE).contains(&share) {
            continue;
        }
        let mean_of = |want: bool| {
            let (s, c) = z
                .iter()
                .zip(&inside)
                .filter(|(_, &b)| b == want)
                .fold((0.0, 0usize), |(s, c), (v, _)| (s + v, c + 1));
            s / c.max(1) as f64
        };
        out.push(ClusterContrast {
            cluster: id,
            share,
            separation: separation(graph, &inside),
            magnitude_shift: mean_of(true) - mean_of(false),
        });
    }
    out
}

/// Of `clusters`, the one with the largest `key`. Ties — with two clusters, a cluster and its
/// complement score the same — go to the smaller cluster (the candidate artifact group, as
/// SpRAy reads its clusters), then the smaller label. None compared: cluster −1.
fn largest_by(clusters: &[ClusterContrast], key: fn(&ClusterContrast) -> f64) -> ClusterContrast {
    let mut best = ClusterContrast {
        cluster: -1,
        ..Default::default()
    };
    for candidate in clusters {
        let (a, b) = (key(candidate), key(&best));
        let better = a > b + 1e-12 || ((a - b).abs() <= 1e-12 && candidate.share < best.share);
        if best.cluster < 0 || better {
            best = *candidate;
        }
    }
    best
}

/// The cluster with the largest `ClusterContrast::score`; ties to the smaller cluster, then
/// the smaller label.
pub fn strongest_of(clusters: &[ClusterContrast]) -> ClusterContrast {
    largest_by(clusters, ClusterContrast::score)
}

/// The cluster most cut off from the rest: the largest separation; ties to the smaller
/// cluster, then the smaller label.
pub fn most_cut_off(clusters: &[ClusterContrast]) -> ClusterContrast {
    largest_by(clusters, |c| c.separation)
}

/// The cluster with the largest `ClusterContrast::score` of a labelled graph ([`clusters`],
/// [`strongest_of`]).
pub fn strongest(graph: &KnnGraph, labels: &[i32], mass: &[f64]) -> ClusterContrast {
    strongest_of(&clusters(graph, labels, mass))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EdgeWeight, KnnTable, Symmetrize};

    /// Two triangles {0,1,2} and {3,4,5} joined by the edge 2–3.
    fn two_triangles() -> KnnGraph {
        let edges = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)];
        let mut neighbors = vec![Vec::new(); 6];
        for &(a, b) in &edges {
            neighbors[a].push((b, 1.0));
            neighbors[b].push((a, 1.0));
        }
        KnnGraph::build(
            &KnnTable { k: 3, neighbors },
            EdgeWeight::Binary,
            Symmetrize::Max,
        )
    }

    #[test]
    fn separation_is_one_minus_conductance() {
        let g = two_triangles();
        // one edge of weight 1 leaves a side of volume 2+2+3 = 7
        let s = separation(&g, &[true, true, true, false, false, false]);
        assert!((s - (1.0 - 1.0 / 7.0)).abs() < 1e-12, "{s}");
        // {0}: both of its edges leave, volume 2
        assert_eq!(
            separation(&g, &[true, false, false, false, false, false]),
            0.0
        );
    }

    #[test]
    fn strongest_cluster_needs_both_a_cut_and_a_mass_shift() {
        let g = two_triangles();
        let labels = [0, 0, 0, 1, 1, 1];
        let cut = 1.0 - 1.0 / 7.0;
        // equal masses (up to rounding): no shift, the score is the separation alone
        let flat = strongest(&g, &labels, &[1.0, 1.0 + 1e-9, 1.0, 1.0 - 1e-9, 1.0, 1.0]);
        assert_eq!(flat.magnitude_shift, 0.0);
        assert!((flat.score() - cut).abs() < 1e-12);
        // cluster 1 carries e times the mass: z = ±1, shift 2 (−2 for cluster 0)
        let e = std::f64::consts::E;
        let c = strongest(&g, &labels, &[1.0, 1.0, 1.0, e, e, e]);
        assert!((c.magnitude_shift.abs() - 2.0).abs() < 1e-12);
        assert!((c.score() - 3.0 * cut).abs() < 1e-12);
        // both sides score the same and are equally large: the smaller label wins the tie
        assert_eq!(c.cluster, 0);
        // of a cluster and its complement, the smaller one is named
        let uneven = strongest(&g, &[0, 0, 0, 0, 1, 1], &[1.0, 1.0, 1.0, 1.0, e, e]);
        assert_eq!(uneven.cluster, 1);
        assert!(uneven.magnitude_shift > 0.0);
        // the score does not depend on the unit of relevance
        let scaled = strongest(&g, &labels, &[3.0, 3.0, 3.0, 3.0 * e, 3.0 * e, 3.0 * e]);
        assert!((scaled.score() - c.score()).abs() < 1e-12);
    }

    #[test]
    fn tiny_clusters_and_noise_are_ignored() {
        let g = two_triangles();
        // a single noise point and one real cluster covering everything else (share 5/6 is
        // allowed, 1/6 too; −1 is not a cluster)
        let c = strongest(&g, &[-1, 0, 0, 0, 0, 0], &[9.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(c.cluster, 0);
        let none = strongest(&g, &[0; 6], &[1.0; 6]);
        assert_eq!(none.cluster, -1);
        assert_eq!(none.score(), 0.0);
    }

    #[test]
    fn the_most_cut_off_cluster_need_not_be_the_strongest() {
        // Two triangles joined by 2–3, and a pair {6, 7} tied to the second triangle by two
        // edges: cluster 0 = {0,1,2} keeps 6 of its 7 edge ends inside, cluster 1 = {3,4,5}
        // 6 of 9, cluster 2 = {6,7} 2 of 4. Cluster 1 carries the least mass, cluster 0 about
        // the group's mean: the mass shift makes cluster 1 the strongest.
        let edges = [
            (0, 1),
            (0, 2),
            (1, 2),
            (3, 4),
            (3, 5),
            (4, 5),
            (2, 3),
            (6, 7),
            (6, 4),
            (7, 5),
        ];
        let mut neighbors = vec![Vec::new(); 8];
        for &(a, b) in &edges {
            neighbors[a].push((b, 1.0));
            neighbors[b].push((a, 1.0));
        }
        let g = KnnGraph::build(
            &KnnTable { k: 3, neighbors },
            EdgeWeight::Binary,
            Symmetrize::Max,
        );
        let (e, half) = (std::f64::consts::E, 0.5f64.exp());
        let labels = [0, 0, 0, 1, 1, 1, 2, 2];
        let all = clusters(&g, &labels, &[half, half, half, 1.0, 1.0, 1.0, e, e]);
        assert_eq!(all.len(), 3);
        let cut = most_cut_off(&all);
        assert_eq!(cut.cluster, 0);
        assert!((cut.separation - (1.0 - 1.0 / 7.0)).abs() < 1e-12);
        let strongest = strongest_of(&all);
        assert_eq!(strongest.cluster, 1);
        assert!(strongest.separation < cut.separation);
        assert!(strongest.score() > cut.score());
        // Nothing to compare: no cluster.
        assert_eq!(most_cut_off(&[]).cluster, -1);
    }
}

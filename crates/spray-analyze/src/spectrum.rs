//! What a group's spectrum says before any clustering: its eigengaps, how many eigenvalues
//! are (near) zero, how many clusters to cut the group into, and the group's score under the
//! ranking criterion.

use spray_store::analysis::ClusterContrast;

use crate::eigen;
use crate::settings::{AnalysisSettings, RankCriterion};

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

/// The reading of an ascending spectrum (the smallest eigenvalues of the group's Laplacian).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpectrumReading {
    /// λi+1 − λi.
    pub gaps: Vec<f64>,
    /// The largest gap for i ≥ 2 (below `max_clusters`), and its 1-based index.
    pub largest_gap: f64,
    pub largest_gap_index: i32,
    /// Eigenvalues below `near_zero`.
    pub near_zero: i32,
    /// Clusters the spectrum suggests (before `clusters` / `min_clusters`).
    pub estimated: i32,
    /// The second smallest eigenvalue (0 when there is none).
    pub lambda2: f64,
}

impl SpectrumReading {
    pub fn of(values: &[f64], settings: &AnalysisSettings) -> SpectrumReading {
        let gaps = eigen::gaps(values);
        let (largest_gap, largest_gap_index, by_gap) =
            eigengap_stats(values, settings.max_clusters);
        let near_zero = values.iter().filter(|&&v| v < settings.near_zero).count() as i32;
        // Eigenvalues at zero count disjoint components (thesis §6.2): when the graph falls
        // apart, that count is the number of clusters; otherwise the eigengap decides.
        let estimated = if near_zero >= 2 {
            near_zero.min(settings.max_clusters as i32)
        } else {
            by_gap
        };
        SpectrumReading {
            gaps,
            largest_gap,
            largest_gap_index,
            near_zero,
            estimated,
            lambda2: values.get(1).copied().unwrap_or(0.0),
        }
    }

    /// The clusters to cut a group of `n` points into: the fixed `clusters`, else the estimate
    /// (at least `min_clusters`); never more than the `eigenvectors` or the points.
    pub fn clusters(&self, settings: &AnalysisSettings, eigenvectors: usize, n: usize) -> usize {
        settings
            .clusters
            .unwrap_or_else(|| (self.estimated as usize).max(settings.min_clusters))
            .min(eigenvectors.max(1))
            .min(n.max(1))
    }

    /// The group's score under `rank_by` (larger = more suspicious); `strongest` is the
    /// group's strongest cluster contrast.
    pub fn score(&self, rank_by: RankCriterion, strongest: &ClusterContrast) -> f64 {
        match rank_by {
            RankCriterion::Contrast => strongest.score(),
            RankCriterion::Eigengap => self.largest_gap,
            RankCriterion::Lambda2 => -self.lambda2,
            RankCriterion::NearZero => self.near_zero as f64 - self.lambda2.min(1.0) * 1e-3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigengap_stats_skip_the_first_gap_for_the_largest() {
        // gaps 0.5, 0.1, 0.3, 0.05
        let values = [0.0, 0.5, 0.6, 0.9, 0.95];
        let (largest, index, by_gap) = eigengap_stats(&values, 10);
        assert!((largest - 0.3).abs() < 1e-12);
        assert_eq!(index, 3);
        assert_eq!(by_gap, 1);
        // gaps at i ≥ max_clusters do not count
        assert_eq!(eigengap_stats(&values, 2).1, 2);
    }

    #[test]
    fn components_decide_the_estimate_when_the_graph_falls_apart() {
        let settings = AnalysisSettings {
            max_clusters: 3,
            ..AnalysisSettings::default()
        };
        let apart = SpectrumReading::of(&[0.0, 0.0, 0.0, 0.0, 0.7], &settings);
        assert_eq!(apart.near_zero, 4);
        assert_eq!(apart.estimated, 3);
        assert_eq!(apart.lambda2, 0.0);
        let joined = SpectrumReading::of(&[0.0, 0.1, 0.8, 0.9], &settings);
        assert_eq!(joined.near_zero, 1);
        assert_eq!(joined.estimated, 2);
        assert!((joined.lambda2 - 0.1).abs() < 1e-12);
        assert_eq!(SpectrumReading::of(&[0.0], &settings).lambda2, 0.0);
    }

    #[test]
    fn clusters_are_fixed_or_estimated_and_capped() {
        let reading = SpectrumReading::of(&[0.0, 0.1, 0.8, 0.9], &AnalysisSettings::default());
        let estimated = AnalysisSettings {
            min_clusters: 3,
            ..AnalysisSettings::default()
        };
        assert_eq!(reading.clusters(&estimated, 20, 100), 3);
        let fixed = AnalysisSettings {
            clusters: Some(7),
            ..AnalysisSettings::default()
        };
        assert_eq!(reading.clusters(&fixed, 20, 100), 7);
        assert_eq!(reading.clusters(&fixed, 5, 100), 5);
        assert_eq!(reading.clusters(&fixed, 20, 4), 4);
        assert_eq!(reading.clusters(&fixed, 0, 0), 1);
    }

    #[test]
    fn each_criterion_scores_its_own_statistic() {
        let reading = SpectrumReading::of(&[0.0, 0.0, 0.5, 0.6], &AnalysisSettings::default());
        let contrast = ClusterContrast {
            cluster: 1,
            share: 0.3,
            separation: 0.8,
            magnitude_shift: -0.5,
        };
        assert!((reading.score(RankCriterion::Contrast, &contrast) - 1.2).abs() < 1e-12);
        assert!((reading.score(RankCriterion::Eigengap, &contrast) - 0.5).abs() < 1e-12);
        assert_eq!(reading.score(RankCriterion::Lambda2, &contrast), -0.0);
        assert_eq!(reading.score(RankCriterion::NearZero, &contrast), 2.0);
    }
}

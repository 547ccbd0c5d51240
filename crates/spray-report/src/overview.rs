//! The top of the page, every class at once: the ranking table's rows and the overview charts
//! of the smallest eigenvalues.

use serde::Serialize;
use spray_store::analysis::{ClassSpectrum, ClusterContrast};
use spray_store::ranking::is_flagged_ranked;

use crate::inputs::StageTables;
use crate::reasons::why_sentence;
use crate::{charts, class_page, evidence, RankedClass, Result};

/// One row of the ranking table.
#[derive(Serialize)]
pub(crate) struct PageRow {
    rank: usize,
    pub(crate) flagged: bool,
    /// The class's page, relative to the index, when it has one.
    href: Option<String>,
    name: String,
    class_index: i32,
    n: i64,
    lambda2: String,
    largest_gap: String,
    gap_index: i32,
    estimated: i32,
    clusters: i32,
    near_zero: i32,
    score: String,
    /// The strongest cluster by the contrast criterion: label, share, separation, shift.
    contrast_cluster: String,
    separation: String,
    magnitude_shift: String,
    /// One sentence: why the class is (or is not) flagged.
    why: String,
    baseline_lambda2: String,
    baseline_gap: String,
    /// The strongest transplant flip rate of the class's clusters (verify stage).
    flip_rate: String,
    /// flip rate − control of the class's strongest cluster (verify stage).
    verified_effect: String,
}

/// The ranking table, in rank order; the first `detail_classes` link to their pages.
pub(crate) fn ranking_rows(
    ranking: &[RankedClass],
    tables: &StageTables,
    detail_classes: usize,
) -> Vec<PageRow> {
    ranking
        .iter()
        .map(|r| {
            let s = &r.spectrum;
            let baseline = |value: fn(&ClassSpectrum) -> f64| {
                r.baseline
                    .as_ref()
                    .map(|b| fmt(value(b)))
                    .unwrap_or_default()
            };
            PageRow {
                rank: r.rank,
                flagged: is_flagged_ranked(r),
                href: (r.rank <= detail_classes).then(|| class_page::href(s.class_index)),
                name: s.class_name.clone(),
                class_index: s.class_index,
                n: s.n,
                lambda2: fmt(s.lambda2),
                largest_gap: fmt(s.largest_gap),
                gap_index: s.largest_gap_index,
                estimated: s.estimated_clusters,
                clusters: s.clusters,
                near_zero: s.near_zero,
                score: fmt(s.score),
                contrast_cluster: contrast_label(&s.contrast),
                separation: fmt(s.contrast.separation),
                magnitude_shift: format!("{:+.2}", s.contrast.magnitude_shift),
                why: why_sentence(r, &tables.concept_layers),
                baseline_lambda2: baseline(|b| b.lambda2),
                baseline_gap: baseline(|b| b.largest_gap),
                flip_rate: evidence::best_flip(tables.class_evidence(s.class_index)),
                verified_effect: r
                    .evidence
                    .map(|e| format!("{:+.0}%", 100.0 * e.specific()))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The overview charts (thesis Fig 6.5): the smallest eigenvalues of every class ordered by
/// λ2, and the same for the image baseline when it was analysed.
pub(crate) struct OverviewCharts {
    pub relevance: String,
    pub baseline: Option<String>,
}

pub(crate) fn overview_charts(ranking: &[RankedClass], count: usize) -> Result<OverviewCharts> {
    let relevance = charts::overview_svg(
        "Smallest eigenvalues per class (relevance), ordered by λ2",
        &by_lambda2(ranking.iter().map(|r| &r.spectrum)),
        count,
    )?;
    let baseline = if ranking.iter().any(|r| r.baseline.is_some()) {
        Some(charts::overview_svg(
            "Baseline: the same on downsized input images",
            &by_lambda2(ranking.iter().filter_map(|r| r.baseline.as_ref())),
            count,
        )?)
    } else {
        None
    };
    Ok(OverviewCharts {
        relevance,
        baseline,
    })
}

/// (class name, eigenvalues) ordered by λ2 (a stable sort: ties keep the given order).
fn by_lambda2<'a>(spectra: impl Iterator<Item = &'a ClassSpectrum>) -> Vec<(String, Vec<f64>)> {
    let mut sorted: Vec<&ClassSpectrum> = spectra.collect();
    sorted.sort_by(|a, b| a.lambda2.total_cmp(&b.lambda2));
    sorted
        .iter()
        .map(|s| (s.class_name.clone(), s.eigenvalues.clone()))
        .collect()
}

/// "3 (25%)": the strongest cluster and its share; empty when no cluster qualified.
fn contrast_label(c: &ClusterContrast) -> String {
    if c.cluster < 0 {
        String::new()
    } else {
        format!("{} ({:.0}%)", c.cluster, 100.0 * c.share)
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::spectrum;

    #[test]
    fn the_overview_orders_classes_by_lambda2_keeping_ties_in_rank_order() {
        let mut a = spectrum(0, "a", ClusterContrast::default());
        let mut b = spectrum(1, "b", ClusterContrast::default());
        let mut c = spectrum(2, "c", ClusterContrast::default());
        (a.lambda2, b.lambda2, c.lambda2) = (0.3, 0.1, 0.3);
        let names: Vec<String> = by_lambda2([&a, &b, &c].into_iter())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn the_contrast_label_is_empty_without_a_cluster() {
        let mut c = ClusterContrast {
            cluster: 3,
            share: 0.254,
            ..Default::default()
        };
        assert_eq!(contrast_label(&c), "3 (25%)");
        c.cluster = -1;
        assert_eq!(contrast_label(&c), "");
    }
}

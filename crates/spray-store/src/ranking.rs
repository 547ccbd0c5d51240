//! Which classes are suspicious. Two rankings, one module: the analysis' ranking of the
//! relevance-space spectra (`rank`: what the verify stage tests), and the final ranking that
//! puts the classes the verify stage tested first, by the causal evidence it found
//! (`rank_with_evidence`: what the report and `spray run` show). The flag rules live here too,
//! so the report, the verify stage and the pipeline read one definition.

use crate::analysis::ClassSpectrum;
use crate::verify::{effect_key, Evidence};

/// One row of the class ranking (relevance space, with the image baseline beside it).
#[derive(Debug, Clone)]
pub struct RankedClass {
    pub rank: usize,
    pub spectrum: ClassSpectrum,
    pub baseline: Option<ClassSpectrum>,
    /// The verify stage's strongest cluster of the class, when it was tested.
    pub evidence: Option<ClassEvidence>,
}

/// The verify stage's finding for a class: its cluster whose region, pasted onto other
/// classes' images, turns the most of them into the class beyond the control (the same region
/// pasted from the class's other images).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassEvidence {
    pub space: crate::FeatureSpace,
    pub level: crate::verify::ClusterLevel,
    pub cluster: i32,
    /// The evidence test that measured it.
    pub test: crate::EvidenceTest,
    pub flip_rate: f64,
    pub control_flip_rate: f64,
    /// Whether the row stopped before its control was measured (`Evidence::screened`: then
    /// `control_flip_rate` reads 0 and the effect is an upper bound, below the flag).
    pub screened: bool,
    /// The recipients the group's transplant and its control were measured on
    /// (`Evidence::transplant_images`, `Evidence::control_images`).
    pub recipients: (usize, usize),
}

impl ClassEvidence {
    /// The group that carried the class's evidence.
    pub fn group(&self) -> crate::GroupId {
        crate::GroupId {
            space: self.space,
            level: self.level,
            label: self.cluster,
        }
    }

    /// flip rate − control: the effect specific to the cluster's region.
    pub fn specific(&self) -> f64 {
        self.flip_rate - self.control_flip_rate
    }

    /// About two standard errors of the specific effect, from its two rates and the
    /// recipients each was measured on — unpaired, so no smaller than the verify stage's own,
    /// which pairs group and control recipient by recipient; none for a screened row or one
    /// without recipients.
    pub fn margin(&self) -> Option<f64> {
        let (n, nc) = self.recipients;
        if self.screened || n == 0 || nc == 0 {
            return None;
        }
        let (f, c) = (self.flip_rate, self.control_flip_rate);
        Some(2.0 * (f * (1.0 - f) / n as f64 + c * (1.0 - c) / nc as f64).sqrt())
    }

    /// Whether the flag lies within [`ClassEvidence::margin`] of the effect, above or below
    /// it: more recipients could put the class on either side of the flag
    /// (`[verify] verdict_images`). Why say so: at a hundred recipients weak shortcuts and
    /// a clean class's natural mode both read 0.23–0.38 (benches/RESULTS.md).
    pub fn within_reach_of_flag(&self) -> bool {
        self.margin()
            .is_some_and(|m| (self.specific() - FLAG_SPECIFIC_EFFECT).abs() < m)
    }

    /// The strongest of a class's evidence rows that count ([`Evidence::counts`]; largest
    /// specific effect; ties: the row first in the file, which the verify stage orders the
    /// same way).
    pub fn strongest<'a>(rows: impl IntoIterator<Item = &'a Evidence>) -> Option<Self> {
        let mut best: Option<Self> = None;
        for r in rows.into_iter().filter(|r| r.counts()) {
            let e = ClassEvidence {
                space: r.space,
                level: r.level,
                cluster: r.cluster,
                test: r.test,
                flip_rate: r.transplant_flip_rate,
                control_flip_rate: r.transplant_flip_rate_rest,
                screened: r.screened(),
                recipients: (r.transplant_images, r.control_images),
            };
            if best.is_none_or(|b| effect_key(e.specific()) > effect_key(b.specific())) {
                best = Some(e);
            }
        }
        best
    }
}

/// A tested class is flagged when its strongest cluster's region turns at least this share of
/// other classes' images into the class beyond the control.
pub const FLAG_SPECIFIC_EFFECT: f64 = 0.3;

/// The final ranking: the classes the verify stage tested, by their specific transplant
/// effect (descending; ties by the analysis order), then the others in the analysis order.
/// Why: whether a cluster's region *causes* the prediction is what makes it a shortcut; the
/// spectral structure only proposes candidates, and a clean class with natural modes has
/// structure too (on the scenario suite −λ2 and the contrast criterion rank such classes above
/// shortcut classes, the evidence does not: `benches/RESULTS.md`). Without evidence this is
/// `rank`.
pub fn rank_with_evidence(spectra: &[ClassSpectrum], evidence: &[Evidence]) -> Vec<RankedClass> {
    let mut ranking = rank(spectra);
    for r in &mut ranking {
        r.evidence = ClassEvidence::strongest(
            evidence
                .iter()
                .filter(|e| e.class_index == r.spectrum.class_index),
        );
    }
    // a stable sort keeps the analysis order among ties and among the untested
    ranking.sort_by(|a, b| match (a.evidence, b.evidence) {
        (Some(x), Some(y)) => effect_key(y.specific()).cmp(&effect_key(x.specific())),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    for (i, r) in ranking.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    ranking
}

/// Rank classes by their relevance-space score (descending; ties by class index).
pub fn rank(spectra: &[ClassSpectrum]) -> Vec<RankedClass> {
    let mut relevance: Vec<&ClassSpectrum> = spectra
        .iter()
        .filter(|s| s.space == crate::FeatureSpace::Relevance)
        .collect();
    // Ties (e.g. several disconnected classes at λ2 = 0) go to more zero eigenvalues, then
    // the larger eigengap, then the class index.
    relevance.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.near_zero.cmp(&a.near_zero))
            .then(b.largest_gap.total_cmp(&a.largest_gap))
            .then(a.class_index.cmp(&b.class_index))
    });
    relevance
        .into_iter()
        .enumerate()
        .map(|(i, s)| RankedClass {
            rank: i + 1,
            spectrum: s.clone(),
            baseline: spectra
                .iter()
                .find(|b| b.space == crate::FeatureSpace::Image && b.class_index == s.class_index)
                .cloned(),
            evidence: None,
        })
        .collect()
}

/// A class is flagged when its strongest cluster (`ClusterContrast`) is cut off in the kNN
/// graph (separation at least `FLAG_SEPARATION`: at most a tenth of its edges leave it) and
/// its maps carry a different relevance mass than the rest of the class (mean log mass
/// shifted by at least `FLAG_MAGNITUDE_SHIFT` standard deviations). Natural modes of a class
/// usually pass the first test and fail the second; the report shows both numbers.
pub const FLAG_SEPARATION: f64 = 0.9;
pub const FLAG_MAGNITUDE_SHIFT: f64 = 1.0;

/// The classes flagged as suspicious, in ranking order: a class the verify stage tested by its
/// evidence (`FLAG_SPECIFIC_EFFECT`), any other by its spectrum (`FLAG_SEPARATION`).
pub fn flag(ranking: &[RankedClass]) -> Vec<String> {
    ranking
        .iter()
        .filter(|r| is_flagged_ranked(r))
        .map(|r| r.spectrum.class_name.clone())
        .collect()
}

/// The flag rule for one ranked class (evidence first, see `flag`).
pub fn is_flagged_ranked(r: &RankedClass) -> bool {
    match r.evidence {
        Some(e) => e.specific() >= FLAG_SPECIFIC_EFFECT,
        None => is_flagged(&r.spectrum),
    }
}

/// The spectral flag rule for one class (what the verify stage tests besides the top classes).
pub fn is_flagged(spectrum: &ClassSpectrum) -> bool {
    let c = &spectrum.contrast;
    c.cluster >= 0
        && c.separation >= FLAG_SEPARATION
        && c.magnitude_shift.abs() >= FLAG_MAGNITUDE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ClusterContrast;

    fn spectrum(class_index: i32, score: f64) -> ClassSpectrum {
        ClassSpectrum {
            class_index,
            class_name: format!("c{class_index}"),
            space: crate::FeatureSpace::Relevance,
            n: 10,
            knn_k: 3,
            eigenvalues: vec![0.0, 0.1],
            gaps: vec![0.1],
            largest_gap: 0.0,
            largest_gap_index: 1,
            estimated_clusters: 2,
            clusters: 2,
            near_zero: 1,
            lambda2: 0.1,
            score,
            contrast: ClusterContrast {
                cluster: 0,
                share: 0.5,
                separation: 0.95,
                magnitude_shift: 1.5,
            },
            cut_off: ClusterContrast {
                cluster: 0,
                share: 0.5,
                separation: 0.95,
                magnitude_shift: 1.5,
            },
        }
    }

    fn evidence(class_index: i32, cluster: i32, flip: f64, control: f64) -> Evidence {
        Evidence {
            class_index,
            class_name: format!("c{class_index}"),
            space: Default::default(),
            level: Default::default(),
            cluster,
            size: 5,
            share: 0.5,
            test: crate::EvidenceTest::SharedRegion,
            region: String::new(),
            region_cells: 1,
            grid: 8,
            occlusion_drop: 0.0,
            occlusion_drop_rest: 0.0,
            accuracy_before: 1.0,
            accuracy_after: 1.0,
            transplant_logit_gain: 0.0,
            transplant_flip_rate: flip,
            transplant_flip_rate_rest: control,
            transplant_images: 10,
            control_images: 10,
            occluded_images: 20,
            pictures: None,
        }
    }

    #[test]
    fn verified_classes_come_first_by_their_specific_effect() {
        // analysis order: c0 (3.0), c1 (2.0), c2 (1.0), c3 (0.5)
        let spectra = [
            spectrum(0, 3.0),
            spectrum(1, 2.0),
            spectrum(2, 1.0),
            spectrum(3, 0.5),
        ];
        // c0 tested, weak; c2 tested, strong (its best cluster by flip − control is cluster 1,
        // not the one with the larger raw flip); c1 and c3 untested
        let rows = [
            evidence(0, 0, 0.3, 0.2),
            evidence(2, 0, 0.9, 0.8),
            evidence(2, 1, 0.7, 0.1),
        ];
        let ranked = rank_with_evidence(&spectra, &rows);
        let order: Vec<i32> = ranked.iter().map(|r| r.spectrum.class_index).collect();
        assert_eq!(order, [2, 0, 1, 3]);
        assert_eq!(
            ranked.iter().map(|r| r.rank).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let best = ranked[0].evidence.unwrap();
        assert_eq!(best.cluster, 1);
        assert!((best.specific() - 0.6).abs() < 1e-12);
        // flags: c2 by evidence (0.6 ≥ 0.3); c0's evidence (0.1) overrides its spectral flag;
        // the untested keep the spectral rule (both pass it here)
        assert_eq!(flag(&ranked), ["c2", "c1", "c3"]);
        // without evidence the final ranking is the analysis ranking
        let plain: Vec<i32> = rank_with_evidence(&spectra, &[])
            .iter()
            .map(|r| r.spectrum.class_index)
            .collect();
        assert_eq!(plain, [0, 1, 2, 3]);
    }

    /// A fine-detail row counts only where its group's images lose the class without their
    /// detail; a region row always counts.
    #[test]
    fn a_detail_transfer_counts_only_where_the_group_needs_its_detail() {
        let mut kept = evidence(0, 1, 0.5, 0.1);
        kept.test = crate::EvidenceTest::DetailTransfer;
        kept.accuracy_after = 0.97;
        let mut lost = kept.clone();
        lost.cluster = 2;
        lost.transplant_flip_rate = 0.4;
        lost.accuracy_after = 0.3;
        let region = evidence(0, 3, 0.2, 0.1);
        assert!(!kept.counts() && lost.counts() && region.counts());
        let best = ClassEvidence::strongest([&kept, &region, &lost]).unwrap();
        assert_eq!(
            (best.cluster, best.test),
            (2, crate::EvidenceTest::DetailTransfer)
        );
        // Only the detail row that does not count: the region row carries the class.
        let best = ClassEvidence::strongest([&kept, &region]).unwrap();
        assert_eq!(best.cluster, 3);
    }

    /// Equal effects that differ only in their last bits (1/10 − 0 and 3/10 − 2/10) tie, and
    /// the tie goes to the analysis' order, in the class ranking and among a class's rows.
    #[test]
    fn equal_effects_computed_differently_tie() {
        let (a, b) = (0.1 - 0.0, 0.3 - 0.2);
        assert_ne!(a, b);
        let spectra = [spectrum(0, 3.0), spectrum(1, 2.0)];
        let rows = [evidence(1, 0, 0.3, 0.2), evidence(0, 0, 0.1, 0.0)];
        let order: Vec<i32> = rank_with_evidence(&spectra, &rows)
            .iter()
            .map(|r| r.spectrum.class_index)
            .collect();
        assert_eq!(order, [0, 1]);
        let first = evidence(0, 1, 0.1, 0.0);
        let second = evidence(0, 2, 0.3, 0.2);
        assert_eq!(
            ClassEvidence::strongest([&first, &second]).unwrap().cluster,
            1
        );
    }
}

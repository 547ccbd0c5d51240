//! Detection metrics against a known truth: how well an analysis finds planted shortcuts.
//!
//! The truth is a scenario's `truth.json` ([`truth`]). Per shortcut class: its rank, and the
//! best one-vs-rest adjusted Rand index of any of its groups against the artifact images
//! (`best_group`); per run: the AUROC of the class ranking (shortcut classes positive) and
//! the false alarms — clean classes ranked above a shortcut class ([`metrics`]). The ranking
//! is the report's (`rank_with_evidence`: verified classes first, by their evidence).
//! `spray evaluate` prints them (`display`); `benches/detection.sh` runs the whole suite.

mod best_group;
mod display;
pub mod metrics;
pub mod truth;

use std::path::Path;

use serde::Serialize;
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::ranking::{is_flagged_ranked, rank_with_evidence};
use spray_store::verify::Evidence;
use spray_store::FeatureSpace;

use crate::{RankedClass, ReportError, Result};
use best_group::{best_group, count_artifact_images};
pub use metrics::{adjusted_rand_index, auroc};
use truth::ArtifactImages;
pub use truth::{ClassKind, DetectionTruth, ImageTruth, ShortcutTruth, StampedEffect};

/// The figures for one shortcut class.
#[derive(Debug, Clone, Serialize)]
pub struct ShortcutResult {
    pub class: String,
    pub artifact: String,
    pub rank: usize,
    pub flagged: bool,
    /// Images of the class that carry the artifact, of all its analysed images.
    pub artifact_images: usize,
    pub images: usize,
    /// The group (a cluster, or a side of the two-way split, in the relevance space or a
    /// concept space) that matches the artifact images best, and its one-vs-rest ARI.
    #[serde(serialize_with = "as_text")]
    pub best_space: FeatureSpace,
    pub best_level: spray_store::verify::ClusterLevel,
    pub best_cluster: i32,
    pub best_ari: f64,
    /// The verify stage's specific transplant effect of the class's strongest cluster, when
    /// it tested the class.
    pub verified_effect: Option<f64>,
    /// The evidence test that measured it (`shared-region`, `pattern-transfer`, …).
    pub verified_test: Option<spray_store::EvidenceTest>,
    /// The artifact's own effect on the model where the truth records it
    /// ([`StampedEffect::specific`]): what a perfect test would measure.
    pub stamped_effect: Option<f64>,
}

fn as_text<S: serde::Serializer>(space: &FeatureSpace, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&space.to_string())
}

/// The figures for one run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionReport {
    pub scenario: String,
    pub classes: usize,
    pub shortcuts: Vec<ShortcutResult>,
    /// Ranking order, most suspicious first, with each class's kind.
    pub ranking: Vec<(String, ClassKind)>,
    /// Probability that a random shortcut class ranks above a random clean class.
    pub auroc: f64,
    /// Clean classes ranked above the lowest-ranked shortcut class.
    pub false_alarms: Vec<String>,
    /// Clean classes flagged.
    pub flagged_clean: Vec<String>,
}

impl DetectionReport {
    /// Every shortcut class above every clean class, and some cluster of each with ARI ≥
    /// `min_ari`.
    pub fn passes(&self, min_ari: f64) -> bool {
        self.false_alarms.is_empty() && self.shortcuts.iter().all(|s| s.best_ari >= min_ari)
    }
}

/// Evaluate a run (its spectra, samples and the verify stage's evidence, the report's ranking)
/// against a truth.
pub fn evaluate(
    truth: &DetectionTruth,
    spectra: &[ClassSpectrum],
    samples: &[SampleEmbedding],
    evidence: &[Evidence],
) -> Result<DetectionReport> {
    let ranking = rank_with_evidence(spectra, evidence);
    if let Some(class) = truth
        .shortcut_classes
        .keys()
        .find(|name| !ranking.iter().any(|r| &&r.spectrum.class_name == name))
    {
        return Err(ReportError::UnknownShortcutClass {
            class: class.clone(),
        });
    }
    let artifacts = truth.artifact_images();
    let shortcuts: Vec<ShortcutResult> = ranking
        .iter()
        .filter_map(|r| {
            let shortcut = truth.shortcut_classes.get(&r.spectrum.class_name)?;
            let stamped = truth
                .shortcut_effect
                .get(&r.spectrum.class_name)
                .map(StampedEffect::specific);
            Some(shortcut_result(
                r,
                (&shortcut.artifact, stamped),
                samples,
                &artifacts,
            ))
        })
        .collect();
    Ok(ranking_figures(truth, &ranking, shortcuts))
}

/// The figures of one shortcut class: where it ranks, and its best-matching group.
fn shortcut_result(
    r: &RankedClass,
    (artifact, stamped_effect): (&str, Option<f64>),
    samples: &[SampleEmbedding],
    artifacts: &ArtifactImages,
) -> ShortcutResult {
    let class_samples: Vec<&SampleEmbedding> = samples
        .iter()
        .filter(|s| s.class_index == r.spectrum.class_index)
        .collect();
    let count = count_artifact_images(&class_samples, artifacts);
    let best = best_group(&class_samples, artifacts);
    ShortcutResult {
        class: r.spectrum.class_name.clone(),
        artifact: artifact.to_owned(),
        rank: r.rank,
        flagged: is_flagged_ranked(r),
        artifact_images: count.carrying,
        images: count.images,
        best_space: best.group.space,
        best_level: best.group.level,
        best_cluster: best.group.label,
        best_ari: best.ari,
        verified_effect: r.evidence.map(|e| e.specific()),
        verified_test: r.evidence.map(|e| e.test),
        stamped_effect,
    }
}

/// The run's figures: AUROC of the ranking, false alarms and flagged clean classes.
fn ranking_figures(
    truth: &DetectionTruth,
    ranking: &[RankedClass],
    shortcuts: Vec<ShortcutResult>,
) -> DetectionReport {
    let is_shortcut = |r: &RankedClass| truth.kind(&r.spectrum.class_name) == ClassKind::Shortcut;
    let score_of = |want: bool| -> Vec<f64> {
        // ranks as scores (higher = more suspicious), so ties follow the ranking's tie-breaks
        ranking
            .iter()
            .filter(|r| is_shortcut(r) == want)
            .map(|r| -(r.rank as f64))
            .collect()
    };
    let clean_names = |keep: &dyn Fn(&RankedClass) -> bool| -> Vec<String> {
        ranking
            .iter()
            .filter(|r| !is_shortcut(r) && keep(r))
            .map(|r| r.spectrum.class_name.clone())
            .collect()
    };
    let lowest_shortcut = shortcuts.iter().map(|s| s.rank).max().unwrap_or(0);
    DetectionReport {
        scenario: truth.scenario.clone(),
        classes: ranking.len(),
        ranking: ranking
            .iter()
            .map(|r| {
                let name = &r.spectrum.class_name;
                (name.clone(), truth.kind(name))
            })
            .collect(),
        auroc: auroc(&score_of(true), &score_of(false)),
        false_alarms: clean_names(&|r| r.rank < lowest_shortcut),
        flagged_clean: clean_names(&is_flagged_ranked),
        shortcuts,
    }
}

/// Read an analysis folder (and the verify stage's, when it ran) and evaluate them.
pub fn evaluate_dir(
    truth: &DetectionTruth,
    analysis_dir: &Path,
    verify_dir: Option<&Path>,
) -> Result<DetectionReport> {
    let (spectra, samples) = spray_store::analysis::read_all(analysis_dir)?;
    let evidence = match verify_dir {
        Some(dir) => spray_store::verify::read_evidence(dir)?,
        None => Vec::new(),
    };
    evaluate(truth, &spectra, &samples, &evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{sample, spectrum};
    use spray_store::analysis::ClusterContrast;

    fn truth() -> DetectionTruth {
        serde_json::from_str(
            r#"{"scenario": "toy",
                "shortcut_classes": {"cat": {"artifact": "tag"}},
                "natural_mode_classes": {"dog": "pose"},
                "images": [{"path": "cat/img0.png", "artifact": "tag"}]}"#,
        )
        .unwrap()
    }

    /// cat (class 0) and dog (class 1); `cat_first` ranks cat above dog.
    fn spectra(cat_first: bool) -> Vec<ClassSpectrum> {
        let strong = ClusterContrast {
            cluster: 0,
            share: 0.5,
            separation: 0.8,
            magnitude_shift: 0.0,
        };
        let weak = ClusterContrast {
            separation: 0.2,
            ..strong
        };
        let (cat, dog) = if cat_first {
            (strong, weak)
        } else {
            (weak, strong)
        };
        vec![spectrum(0, "cat", cat), spectrum(1, "dog", dog)]
    }

    #[test]
    fn a_shortcut_class_ranked_first_passes() {
        let samples = [sample(0, 0, 0.0), sample(1, 1, 0.0)];
        let report = evaluate(&truth(), &spectra(true), &samples, &[]).unwrap();
        assert_eq!(report.scenario, "toy");
        assert_eq!(report.auroc, 1.0);
        assert!(report.false_alarms.is_empty());
        let cat = &report.shortcuts[0];
        assert_eq!((cat.class.as_str(), cat.rank), ("cat", 1));
        assert_eq!((cat.artifact_images, cat.images), (1, 2));
        assert_eq!(cat.best_cluster, 0);
        assert!((cat.best_ari - 1.0).abs() < 1e-12);
        assert!(report.passes(0.8));
        assert_eq!(
            report.ranking,
            [
                ("cat".to_string(), ClassKind::Shortcut),
                ("dog".to_string(), ClassKind::NaturalModes)
            ]
        );
    }

    #[test]
    fn a_clean_class_above_a_shortcut_is_a_false_alarm() {
        let samples = [sample(0, 0, 0.0), sample(1, 1, 0.0)];
        let report = evaluate(&truth(), &spectra(false), &samples, &[]).unwrap();
        assert_eq!(report.false_alarms, ["dog"]);
        assert_eq!(report.auroc, 0.0);
        assert!(!report.passes(0.0));
    }

    #[test]
    fn a_truth_of_another_dataset_is_refused_with_the_class_it_names() {
        let mut truth = truth();
        truth.shortcut_classes.insert(
            "zebra".into(),
            ShortcutTruth {
                artifact: "tag".into(),
                fraction: 0.1,
            },
        );
        let err = evaluate(&truth, &spectra(true), &[], &[]).unwrap_err();
        assert!(
            matches!(&err, ReportError::UnknownShortcutClass { class } if class == "zebra"),
            "{err:?}"
        );
    }
}

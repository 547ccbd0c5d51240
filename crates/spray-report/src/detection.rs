//! Detection metrics against a known truth: how well an analysis finds planted shortcuts.
//!
//! The truth is a scenario's `truth.json` (`tests/scenarios/make_scenarios.py`): which
//! classes carry a shortcut, which are clean with natural modes, and which images carry the
//! artifact. Per shortcut class: its rank, and the best one-vs-rest adjusted Rand index of any
//! of its clusters against the artifact images; per run: the AUROC of the class ranking
//! (shortcut classes positive) and the false alarms — clean classes ranked above a shortcut
//! class. The ranking is the report's (`rank_with_evidence`: verified classes first, by their
//! evidence). `spray evaluate` prints them; `benches/detection.sh` runs the whole suite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::ranking::{is_flagged_ranked, rank_with_evidence};
use spray_store::verify::Evidence;
use spray_store::FeatureSpace;

use crate::{ReportError, Result};

/// A scenario's truth file.
#[derive(Debug, Clone, Deserialize)]
pub struct DetectionTruth {
    #[serde(default)]
    pub scenario: String,
    /// Shortcut class → its artifact.
    pub shortcut_classes: BTreeMap<String, ShortcutTruth>,
    /// Clean classes with natural modes → the kind of mode.
    #[serde(default)]
    pub natural_mode_classes: BTreeMap<String, String>,
    /// Images with an artifact or a mode (paths relative to the dataset root).
    pub images: Vec<ImageTruth>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShortcutTruth {
    pub artifact: String,
    #[serde(default)]
    pub fraction: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageTruth {
    pub path: String,
    pub artifact: Option<String>,
}

impl DetectionTruth {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::ReadTruth {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::InvalidTruth {
            path: path.to_owned(),
            source,
        })
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassKind {
    Shortcut,
    NaturalModes,
    Clean,
}

impl DetectionReport {
    /// Every shortcut class above every clean class, and some cluster of each with ARI ≥
    /// `min_ari`.
    pub fn passes(&self, min_ari: f64) -> bool {
        self.false_alarms.is_empty() && self.shortcuts.iter().all(|s| s.best_ari >= min_ari)
    }
}

/// Adjusted Rand index of two labelings of the same items (Hubert & Arabie).
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    let n = a.len();
    if n < 2 || b.len() != n {
        return 0.0;
    }
    let mut table: HashMap<(i64, i64), u64> = HashMap::new();
    let mut rows: HashMap<i64, u64> = HashMap::new();
    let mut cols: HashMap<i64, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let pairs = |c: u64| (c * c.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.values().map(|&c| pairs(c)).sum();
    let sum_a: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| pairs(c)).sum();
    let expected = sum_a * sum_b / pairs(n as u64);
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        // both labelings put everything in one group (or are identical partitions of a
        // trivial kind): agreement is perfect exactly when they coincide
        return if index == max { 1.0 } else { 0.0 };
    }
    (index - expected) / (max - expected)
}

/// AUROC of scores for positives against negatives (ties count half).
pub fn auroc(positive: &[f64], negative: &[f64]) -> f64 {
    if positive.is_empty() || negative.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for p in positive {
        for n in negative {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positive.len() * negative.len()) as f64
}

/// The truth path of a sample: its id with the extension of a truth path, or a path suffix.
fn artifact_set(truth: &DetectionTruth) -> HashSet<String> {
    truth
        .images
        .iter()
        .filter(|i| i.artifact.is_some())
        .map(|i| strip_extension(&i.path).to_string())
        .collect()
}

fn strip_extension(p: &str) -> &str {
    match p.rfind('.') {
        Some(i) if !p[i..].contains('/') => &p[..i],
        _ => p,
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
    let artifacts = artifact_set(truth);
    let kind = |name: &str| {
        if truth.shortcut_classes.contains_key(name) {
            ClassKind::Shortcut
        } else if truth.natural_mode_classes.contains_key(name) {
            ClassKind::NaturalModes
        } else {
            ClassKind::Clean
        }
    };
    for name in truth.shortcut_classes.keys() {
        if !ranking.iter().any(|r| &r.spectrum.class_name == name) {
            return Err(ReportError::UnknownShortcutClass {
                class: name.clone(),
            });
        }
    }
    let mut shortcuts = Vec::new();
    for r in &ranking {
        let name = &r.spectrum.class_name;
        let Some(shortcut) = truth.shortcut_classes.get(name) else {
            continue;
        };
        let carries_artifact = |s: &SampleEmbedding| {
            artifacts.contains(strip_extension(&s.sample_id))
                || artifacts
                    .iter()
                    .any(|a| strip_extension(&s.path).ends_with(a.as_str()))
        };
        use spray_store::verify::ClusterLevel;
        let label = |s: &SampleEmbedding, level: ClusterLevel| match level {
            ClusterLevel::Cluster => s.cluster,
            ClusterLevel::Split => s.split,
        };
        let mut spaces: Vec<FeatureSpace> = samples
            .iter()
            .filter(|s| s.space.is_suspect() && s.class_index == r.spectrum.class_index)
            .map(|s| s.space)
            .collect();
        spaces.sort_unstable();
        spaces.dedup();
        let mut best = (
            FeatureSpace::Relevance,
            ClusterLevel::Cluster,
            -1,
            f64::NEG_INFINITY,
        );
        let mut counts = (0, 0);
        for &space in &spaces {
            let members: Vec<&SampleEmbedding> = samples
                .iter()
                .filter(|s| s.space == space && s.class_index == r.spectrum.class_index)
                .collect();
            let carries: Vec<i64> = members.iter().map(|s| carries_artifact(s) as i64).collect();
            if space == FeatureSpace::Relevance {
                counts = (carries.iter().sum::<i64>() as usize, members.len());
            }
            for level in [ClusterLevel::Cluster, ClusterLevel::Split] {
                let mut ids: Vec<i32> = members.iter().map(|s| label(s, level)).collect();
                ids.sort_unstable();
                ids.dedup();
                for &c in &ids {
                    let inside: Vec<i64> = members
                        .iter()
                        .map(|s| (label(s, level) == c) as i64)
                        .collect();
                    let a = adjusted_rand_index(&inside, &carries);
                    if a > best.3 {
                        best = (space, level, c, a);
                    }
                }
            }
        }
        shortcuts.push(ShortcutResult {
            class: name.clone(),
            artifact: shortcut.artifact.clone(),
            rank: r.rank,
            flagged: is_flagged_ranked(r),
            artifact_images: counts.0,
            images: counts.1,
            best_space: best.0,
            best_level: best.1,
            best_cluster: best.2,
            best_ari: best.3.max(-1.0),
            verified_effect: r.evidence.map(|e| e.specific()),
        });
    }
    let score_of = |want: bool| -> Vec<f64> {
        // ranks as scores (higher = more suspicious), so ties follow the ranking's tie-breaks
        ranking
            .iter()
            .filter(|r| (kind(&r.spectrum.class_name) == ClassKind::Shortcut) == want)
            .map(|r| -(r.rank as f64))
            .collect()
    };
    let lowest_shortcut = shortcuts.iter().map(|s| s.rank).max().unwrap_or(0);
    let false_alarms = ranking
        .iter()
        .filter(|r| r.rank < lowest_shortcut && kind(&r.spectrum.class_name) != ClassKind::Shortcut)
        .map(|r| r.spectrum.class_name.clone())
        .collect();
    let flagged_clean = ranking
        .iter()
        .filter(|r| kind(&r.spectrum.class_name) != ClassKind::Shortcut && is_flagged_ranked(r))
        .map(|r| r.spectrum.class_name.clone())
        .collect();
    Ok(DetectionReport {
        scenario: truth.scenario.clone(),
        classes: ranking.len(),
        ranking: ranking
            .iter()
            .map(|r| (r.spectrum.class_name.clone(), kind(&r.spectrum.class_name)))
            .collect(),
        auroc: auroc(&score_of(true), &score_of(false)),
        shortcuts,
        false_alarms,
        flagged_clean,
    })
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

impl std::fmt::Display for DetectionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario {}: {} classes, AUROC {:.3}, false alarms {} ({}), clean classes flagged: {}",
            if self.scenario.is_empty() {
                "?"
            } else {
                &self.scenario
            },
            self.classes,
            self.auroc,
            self.false_alarms.len(),
            self.false_alarms.join(", "),
            if self.flagged_clean.is_empty() {
                "none".to_string()
            } else {
                self.flagged_clean.join(", ")
            }
        )?;
        for s in &self.shortcuts {
            writeln!(
                f,
                "  {:<12} {:<10} rank {}  best {} of {} ARI {:.3}  ({} of {} images carry it){}{}",
                s.class,
                s.artifact,
                s.rank,
                s.best_level.label(s.best_cluster),
                s.best_space,
                s.best_ari,
                s.artifact_images,
                s.images,
                s.verified_effect
                    .map(|e| format!("  verified effect {e:+.2}"))
                    .unwrap_or_default(),
                if s.flagged { "  flagged" } else { "" }
            )?;
        }
        let order: Vec<String> = self
            .ranking
            .iter()
            .map(|(n, k)| match k {
                ClassKind::Shortcut => format!("{n}*"),
                ClassKind::NaturalModes => format!("{n}~"),
                ClassKind::Clean => n.clone(),
            })
            .collect();
        write!(
            f,
            "  ranking (* shortcut, ~ natural modes): {}",
            order.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_matches_hand_computed_values() {
        // identical partitions (up to relabelling)
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
        // a = {0,1,2},{3,4,5}; b = {0,1},{2,3},{4,5}: index 2, sums 6 and 3, 15 pairs
        // expected 6·3/15 = 1.2, max 4.5 → (2 − 1.2)/(4.5 − 1.2) = 0.8/3.3
        let v = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]);
        assert!((v - 0.8 / 3.3).abs() < 1e-12, "{v}");
        // symmetric
        let w = adjusted_rand_index(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 1]);
        assert!((v - w).abs() < 1e-12);
    }

    #[test]
    fn auroc_counts_pairs_and_ties() {
        assert_eq!(auroc(&[3.0, 2.0], &[1.0, 0.0]), 1.0);
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        assert_eq!(auroc(&[0.0, 2.0], &[1.0]), 0.5);
    }

    #[test]
    fn extensions_are_stripped_from_names_only() {
        assert_eq!(strip_extension("a/b_001.png"), "a/b_001");
        assert_eq!(strip_extension("dir.v2/b"), "dir.v2/b");
    }
}

//! A scenario's truth file (`tests/scenarios/make_scenarios.py`): which classes carry a
//! shortcut, which are clean with natural modes, and which images carry the artifact.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use spray_store::analysis::SampleEmbedding;

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
    /// Shortcut class → what its artifact does to the trained model, measured by the
    /// scenario's generator (`make_realistic.py`); absent in older truth files.
    #[serde(default)]
    pub shortcut_effect: BTreeMap<String, StampedEffect>,
}

/// The artifact stamped on fresh images of every other class: the share the model predicts
/// as the shortcut's class, without and with it. Why `spray evaluate` shows it: it is the
/// most any evidence test can turn (a test that gave recipients the artifact itself would
/// turn this many), so it tells a shortcut the model barely learned from one the tests
/// missed.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct StampedEffect {
    pub predicted_as_class_clean: f64,
    pub predicted_as_class_stamped: f64,
}

impl StampedEffect {
    /// The share turned by the artifact beyond those predicted as the class without it.
    pub fn specific(&self) -> f64 {
        self.predicted_as_class_stamped - self.predicted_as_class_clean
    }
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

/// What the truth says a class is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassKind {
    Shortcut,
    NaturalModes,
    Clean,
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

    pub fn kind(&self, class: &str) -> ClassKind {
        if self.shortcut_classes.contains_key(class) {
            ClassKind::Shortcut
        } else if self.natural_mode_classes.contains_key(class) {
            ClassKind::NaturalModes
        } else {
            ClassKind::Clean
        }
    }

    /// Which samples carry an artifact, by the truth's image paths.
    pub(crate) fn artifact_images(&self) -> ArtifactImages {
        ArtifactImages(
            self.images
                .iter()
                .filter(|i| i.artifact.is_some())
                .map(|i| strip_extension(&i.path).to_string())
                .collect(),
        )
    }
}

/// The truth's artifact images, as paths without their extension.
pub(crate) struct ArtifactImages(HashSet<String>);

impl ArtifactImages {
    /// A sample carries an artifact when its id is an artifact image's path, or its path ends
    /// with one (either without extension).
    pub fn contains(&self, s: &SampleEmbedding) -> bool {
        self.0.contains(strip_extension(&s.sample_id))
            || self
                .0
                .iter()
                .any(|a| strip_extension(&s.path).ends_with(a.as_str()))
    }
}

fn strip_extension(p: &str) -> &str {
    match p.rfind('.') {
        Some(i) if !p[i..].contains('/') => &p[..i],
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::sample;

    #[test]
    fn extensions_are_stripped_from_names_only() {
        assert_eq!(strip_extension("a/b_001.png"), "a/b_001");
        assert_eq!(strip_extension("dir.v2/b"), "dir.v2/b");
    }

    fn truth() -> DetectionTruth {
        serde_json::from_str(
            r#"{"shortcut_classes": {"cat": {"artifact": "tag"}},
                "natural_mode_classes": {"dog": "pose"},
                "images": [{"path": "cat/img1.jpg", "artifact": "tag"},
                           {"path": "dog/img2.jpg", "artifact": null}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_recorded_stamped_effect_is_read_and_older_files_have_none() {
        assert!(truth().shortcut_effect.is_empty());
        let t: DetectionTruth = serde_json::from_str(
            r#"{"shortcut_classes": {"cat": {"artifact": "tag"}},
                "shortcut_effect": {"cat": {"artifact": "tag", "logit_clean": -1.0,
                    "logit_stamped": 0.1, "predicted_as_class_clean": 0.0056,
                    "predicted_as_class_stamped": 0.125}},
                "images": []}"#,
        )
        .unwrap();
        assert!((t.shortcut_effect["cat"].specific() - 0.1194).abs() < 1e-12);
    }

    #[test]
    fn classes_are_shortcut_natural_or_clean() {
        let t = truth();
        assert_eq!(t.kind("cat"), ClassKind::Shortcut);
        assert_eq!(t.kind("dog"), ClassKind::NaturalModes);
        assert_eq!(t.kind("bird"), ClassKind::Clean);
    }

    #[test]
    fn an_artifact_image_is_matched_by_path_suffix_whatever_its_extension() {
        let artifacts = truth().artifact_images();
        // the fixture's paths are data/cat/img<i>.png
        assert!(artifacts.contains(&sample(1, 0, 0.0)));
        assert!(!artifacts.contains(&sample(2, 0, 0.0)));
        let mut by_id = sample(5, 0, 0.0);
        by_id.sample_id = "cat/img1".into();
        assert!(artifacts.contains(&by_id));
    }

    #[test]
    fn a_file_that_is_not_a_truth_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.json");
        std::fs::write(&path, "{}").unwrap();
        let err = DetectionTruth::read(&path).unwrap_err();
        assert!(matches!(err, ReportError::InvalidTruth { .. }), "{err:?}");
        let err = DetectionTruth::read(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, ReportError::ReadTruth { .. }), "{err:?}");
    }
}

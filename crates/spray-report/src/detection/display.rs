//! What `spray evaluate` prints: one line for the run, one per shortcut class, the ranking.

use super::{ClassKind, DetectionReport, ShortcutResult};

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
            writeln!(f, "{s}")?;
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

impl std::fmt::Display for ShortcutResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  {:<12} {:<10} rank {}  best {} of {} ARI {:.3}  ({} of {} images carry it){}{}{}{}",
            self.class,
            self.artifact,
            self.rank,
            self.best_level.label(self.best_cluster),
            self.best_space,
            self.best_ari,
            self.artifact_images,
            self.images,
            self.verified_effect
                .map(|e| format!("  verified effect {e:+.2}"))
                .unwrap_or_default(),
            self.verified_test
                .map(|t| format!(" by {t}"))
                .unwrap_or_default(),
            self.stamped_effect
                .map(|e| format!(" (stamped {e:+.2})"))
                .unwrap_or_default(),
            if self.flagged { "  flagged" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spray_store::verify::ClusterLevel;
    use spray_store::FeatureSpace;

    #[test]
    fn the_summary_marks_shortcut_and_natural_classes() {
        let report = DetectionReport {
            scenario: String::new(),
            classes: 2,
            shortcuts: vec![ShortcutResult {
                class: "cat".into(),
                artifact: "tag".into(),
                rank: 1,
                flagged: true,
                artifact_images: 10,
                images: 100,
                best_space: FeatureSpace::Concept(0),
                best_level: ClusterLevel::Split,
                best_cluster: 1,
                best_ari: 0.9,
                verified_effect: Some(0.45),
                verified_test: Some(spray_store::EvidenceTest::PatternTransfer),
                stamped_effect: None,
            }],
            ranking: vec![
                ("cat".into(), ClassKind::Shortcut),
                ("dog".into(), ClassKind::NaturalModes),
            ],
            auroc: 1.0,
            false_alarms: Vec::new(),
            flagged_clean: Vec::new(),
        };
        assert_eq!(
            report.to_string(),
            "scenario ?: 2 classes, AUROC 1.000, false alarms 0 (), clean classes flagged: none\n\
             \x20 cat          tag        rank 1  best split side 1 of concept-0 ARI 0.900  \
             (10 of 100 images carry it)  verified effect +0.45 by pattern-transfer  flagged\n\
             \x20 ranking (* shortcut, ~ natural modes): cat* dog~"
        );
    }

    /// Where the truth records the artifact's own effect, the line shows it beside the
    /// verified one: an unflagged shortcut the model barely learned reads as such.
    #[test]
    fn a_recorded_stamped_effect_follows_the_verified_one() {
        let line = ShortcutResult {
            class: "square".into(),
            artifact: "resaved".into(),
            rank: 4,
            flagged: false,
            artifact_images: 36,
            images: 120,
            best_space: FeatureSpace::Compression,
            best_level: ClusterLevel::Split,
            best_cluster: 0,
            best_ari: 0.835,
            verified_effect: Some(0.23),
            verified_test: None,
            stamped_effect: Some(0.1194),
        }
        .to_string();
        assert!(
            line.ends_with("verified effect +0.23 (stamped +0.12)"),
            "{line}"
        );
    }
}

//! Why a class ranks and is flagged as it is, in one sentence for the ranking table and the
//! class's section.

use spray_store::analysis::{ClassSpectrum, ClusterContrast};
use spray_store::ranking::{FLAG_MAGNITUDE_SHIFT, FLAG_SEPARATION, FLAG_SPECIFIC_EFFECT};
use spray_store::relevance::ConceptLayerInfo;

use crate::space_wording::wording;
use crate::RankedClass;

/// The verify stage's evidence when it tested the class, then its strongest cluster in the
/// analysis (`ClusterContrast`).
pub(crate) fn why_sentence(r: &RankedClass, concept_layers: &[ConceptLayerInfo]) -> String {
    let spectral = spectral_reason(&r.spectrum);
    let Some(e) = r.evidence else {
        return format!("not tested by the verify stage; in the analysis, {spectral}");
    };
    let words = wording(e.space, e.test, concept_layers);
    let tested = format!(
        "tested by the verify stage: {}{}'s {} {:.0}% of",
        e.group().name(),
        words.group_note,
        words.transferred,
        100.0 * e.flip_rate,
    );
    let flag = 100.0 * FLAG_SPECIFIC_EFFECT;
    if e.screened {
        // A screened row's control was never measured (its rate reads 0): its figure is the
        // group's own rate, an upper bound, and the sentence must not call it "more than its
        // control".
        format!(
            "{tested} the first other classes' images tried into this class, too few to reach \
             the {flag:.0}% that flags a class even against a control that turns none, so no \
             control was measured; in the analysis, {spectral}"
        )
    } else {
        // Where the flag is within the figure's margin, the verdict is the sample's as much as
        // the model's: say so, and what decides it.
        let reach = match e.margin() {
            Some(m) if e.within_reach_of_flag() => format!(
                "; on {} recipients that is known to about ±{:.0}%, so more of them could put \
                 the class on either side of the flag (`[verify] verdict_images` decides it)",
                e.recipients.0,
                100.0 * m
            ),
            _ => String::new(),
        };
        format!(
            "{tested} other classes' images into this class, {:.0}% more than its control ({} \
             the {flag:.0}% that flags a class{reach}); in the analysis, {spectral}",
            100.0 * e.specific(),
            if e.specific() >= FLAG_SPECIFIC_EFFECT {
                "at least"
            } else {
                "below"
            },
        )
    }
}

/// The analysis' reason: the class's strongest cluster by the contrast criterion, and the
/// cluster most cut off where that one is cut off and the strongest is not (`cut_off`: the
/// criterion weighs the mass shift too, so "no cluster is cut off" would be untrue).
fn spectral_reason(s: &ClassSpectrum) -> String {
    let c = &s.contrast;
    if c.cluster < 0 {
        return "no cluster of at least 5% of the class to compare".into();
    }
    // A cut-off cluster, and what its parenthesis adds after the edges kept inside.
    let cut_off = |c: &ClusterContrast, more: &str| {
        format!(
            "cluster {} ({:.0}% of the maps) is cut off from the rest ({:.0}% of its kNN edges stay inside{more})",
            c.cluster,
            100.0 * c.share,
            100.0 * c.separation
        )
    };
    let other = &s.cut_off;
    let cut = if c.separation >= FLAG_SEPARATION {
        cut_off(c, "")
    } else if other.cluster >= 0 && other.separation >= FLAG_SEPARATION {
        format!(
            "{}; the strongest by cut and mass together, cluster {}, keeps {:.0}% of its kNN \
             edges inside",
            cut_off(
                other,
                &format!(
                    "; its maps' log mass {:+.2} SD from the rest's",
                    other.magnitude_shift
                )
            ),
            c.cluster,
            100.0 * c.separation
        )
    } else {
        format!(
            "no cluster is cut off (the best, cluster {}, keeps {:.0}% of its kNN edges inside)",
            c.cluster,
            100.0 * c.separation
        )
    };
    let mass = if c.magnitude_shift.abs() >= FLAG_MAGNITUDE_SHIFT {
        format!(
            "its maps carry {} relevance than the rest ({:+.2} SD of log mass): the model answers \
             these images with a different strength of evidence",
            if c.magnitude_shift >= 0.0 {
                "more"
            } else {
                "less"
            },
            c.magnitude_shift
        )
    } else {
        format!(
            "its maps carry about as much relevance as the rest ({:+.2} SD of log mass), as \
             natural modes of a class do",
            c.magnitude_shift
        )
    };
    format!("{cut}; {mass}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{ranked, spectrum};
    use spray_store::analysis::ClusterContrast;
    use spray_store::ranking::ClassEvidence;
    use spray_store::verify::ClusterLevel;
    use spray_store::FeatureSpace;

    fn contrast(cluster: i32, separation: f64, magnitude_shift: f64) -> ClusterContrast {
        ClusterContrast {
            cluster,
            share: 0.25,
            separation,
            magnitude_shift,
        }
    }

    #[test]
    fn a_class_without_a_cluster_to_compare_says_so() {
        let s = spectrum(0, "cat", contrast(-1, 0.0, 0.0));
        assert_eq!(
            spectral_reason(&s),
            "no cluster of at least 5% of the class to compare"
        );
    }

    #[test]
    fn a_cut_off_cluster_with_more_mass_is_named_with_both_reasons() {
        let s = spectrum(0, "cat", contrast(2, 0.95, 1.5));
        let text = spectral_reason(&s);
        assert!(
            text.starts_with("cluster 2 (25% of the maps) is cut off"),
            "{text}"
        );
        assert!(
            text.contains("carry more relevance than the rest (+1.50 SD"),
            "{text}"
        );
        let s = spectrum(0, "cat", contrast(2, 0.5, -0.2));
        let text = spectral_reason(&s);
        assert!(
            text.starts_with("no cluster is cut off (the best, cluster 2, keeps 50%"),
            "{text}"
        );
        assert!(
            text.contains("about as much relevance as the rest (-0.20 SD"),
            "{text}"
        );
    }

    /// The strongest cluster by the criterion is not cut off, another is: the sentence names
    /// that one, then the strongest and its mass.
    #[test]
    fn a_cut_off_cluster_that_is_not_the_strongest_is_named_too() {
        let mut s = spectrum(0, "star", contrast(3, 0.897, -0.49));
        s.cut_off = ClusterContrast {
            cluster: 0,
            share: 0.3,
            separation: 0.992,
            magnitude_shift: 0.33,
        };
        assert_eq!(
            spectral_reason(&s),
            "cluster 0 (30% of the maps) is cut off from the rest (99% of its kNN edges stay \
             inside; its maps' log mass +0.33 SD from the rest's); the strongest by cut and mass \
             together, cluster 3, keeps 90% of its kNN edges inside; its maps carry about as \
             much relevance as the rest (-0.49 SD of log mass), as natural modes of a class do"
        );
        // Not cut off either: no cluster is.
        s.cut_off.separation = 0.85;
        assert!(spectral_reason(&s).starts_with("no cluster is cut off (the best, cluster 3"));
    }

    #[test]
    fn a_tested_class_leads_with_its_evidence_and_the_bar() {
        let mut r = ranked(1, spectrum(0, "cat", contrast(-1, 0.0, 0.0)));
        assert!(why_sentence(&r, &[]).starts_with("not tested by the verify stage"));
        r.evidence = Some(ClassEvidence {
            space: FeatureSpace::Colour,
            level: ClusterLevel::Split,
            cluster: 1,
            test: spray_store::EvidenceTest::ColourTransfer,
            flip_rate: 0.5,
            control_flip_rate: 0.1,
            screened: false,
            recipients: (0, 0),
        });
        let text = why_sentence(&r, &[]);
        assert!(
            text.starts_with(
                "tested by the verify stage: colour split side 1 (images whose global colour"
            ),
            "{text}"
        );
        assert!(
            text.contains("'s colours turn 50% of other classes' images into this class, 40% more"),
            "{text}"
        );
        assert!(
            text.contains("(at least the 30% that flags a class)"),
            "{text}"
        );
    }

    /// A figure within about two standard errors of the flag says the sample could put the
    /// class on either side of it; one clear of the flag, or measured on more recipients, does
    /// not. Hand-computed: 0.46 against 0.23 on 100 recipients each, 2 · √((0.46 · 0.54 +
    /// 0.23 · 0.77) / 100) = 0.1305, and |0.23 − 0.3| < 0.1305.
    #[test]
    fn a_figure_within_reach_of_the_flag_says_so() {
        let mut r = ranked(1, spectrum(0, "cat", contrast(-1, 0.0, 0.0)));
        let near = ClassEvidence {
            space: FeatureSpace::Colour,
            level: ClusterLevel::Cluster,
            cluster: 1,
            test: spray_store::EvidenceTest::ColourTransfer,
            flip_rate: 0.46,
            control_flip_rate: 0.23,
            screened: false,
            recipients: (100, 100),
        };
        assert!((near.margin().unwrap() - 0.1305).abs() < 1e-4);
        r.evidence = Some(near);
        let text = why_sentence(&r, &[]);
        assert!(
            text.contains("(below the 30% that flags a class; on 100 recipients"),
            "{text}"
        );
        assert!(text.contains("known to about ±13%"), "{text}");
        assert!(
            text.contains("`[verify] verdict_images` decides it"),
            "{text}"
        );
        // On a thousand recipients the margin is 0.041: 0.23 is clear of the flag.
        r.evidence = Some(ClassEvidence {
            recipients: (1000, 1000),
            ..near
        });
        assert!(!why_sentence(&r, &[]).contains("either side of the flag"));
        // Clear of it above (0.8 against 0.1), and a screened row: no margin to speak of.
        r.evidence = Some(ClassEvidence {
            flip_rate: 0.8,
            control_flip_rate: 0.1,
            ..near
        });
        assert!(!why_sentence(&r, &[]).contains("either side of the flag"));
        let screened = ClassEvidence {
            screened: true,
            ..near
        };
        assert!(screened.margin().is_none() && !screened.within_reach_of_flag());
    }

    /// A screened row stopped before its control: the sentence gives the group's own rate
    /// and says no control was measured, never "more than its control".
    #[test]
    fn a_screened_strongest_row_says_its_control_was_not_measured() {
        let mut r = ranked(1, spectrum(0, "cat", contrast(-1, 0.0, 0.0)));
        r.evidence = Some(ClassEvidence {
            space: FeatureSpace::Relevance,
            level: ClusterLevel::Split,
            cluster: 1,
            test: spray_store::EvidenceTest::ColourTransfer,
            flip_rate: 0.1,
            control_flip_rate: 0.0,
            screened: true,
            recipients: (0, 0),
        });
        let text = why_sentence(&r, &[]);
        assert!(
            text.contains("'s colours turn 10% of the first other classes' images"),
            "{text}"
        );
        assert!(text.contains("so no control was measured"), "{text}");
        assert!(!text.contains("more than its control"), "{text}");
    }
}

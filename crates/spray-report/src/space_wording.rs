//! How the report words a feature space: what a group of the space is, what the verify stage
//! gave other classes' images from it, and the sentence a reviewer reads about its test.
//!
//! Every space-specific word of the page comes from [`wording`], the one place that looks at
//! which space a group belongs to; the sentences around it (`reasons`, `evidence`) only use
//! what it returns.

use spray_store::relevance::ConceptLayerInfo;
use spray_store::{EvidenceTest, FeatureSpace};

use crate::evidence::{pct, EvidenceRow};

/// The words for one feature space's groups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpaceWording {
    /// Follows a group's label in the ranking's reason: what the group is, for a reader
    /// (" (images whose relevance flows through …)"); empty for the relevance space, whose
    /// groups the page's clusters already show.
    pub group_note: String,
    /// What of the group turns other classes' images, with its verb: "region turns".
    pub transferred: &'static str,
    /// How the verify stage tested the group.
    pub test: TransferTest,
}

/// The verify stage's test of a group, as the evidence sentence tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferTest {
    /// The group's region pasted onto other classes' images, against a control from the
    /// class's other images (`control` says which).
    Region { control: &'static str },
    /// The group's colours (per-channel mean and spread) given to other classes' images,
    /// against the colours of the class's other images.
    Colour,
    /// The group's fine detail (image − low-pass) added to other classes' images, against the
    /// fine detail of the class's other images.
    Detail,
    /// Model-side: other classes' images moved along the group's direction at a concept
    /// layer to where the group's images lie, against the class's other images farthest
    /// along it, the same move mirrored, and a random split of the class.
    Direction,
}

/// The words for a group of `space` measured by `test`; `concept_layers` names a concept
/// space's layer. What a group is comes from the space table (`SpaceSpec::note`), how it was
/// tested from its evidence test.
pub(crate) fn wording(
    space: FeatureSpace,
    test: EvidenceTest,
    concept_layers: &[ConceptLayerInfo],
) -> SpaceWording {
    let group_note = space.note(|i| concept_layers.get(usize::from(i)).map(|l| l.node.clone()));
    // The control differs by test (spray_verify::probe): a member-region group's is each of
    // the other images' own cells; a shared-region group's the same shape (by default the
    // stronger of it at the same place and where each other image's relevance is,
    // `[verify] control`).
    let (transferred, test) = match test {
        EvidenceTest::ColourTransfer => ("colours turn", TransferTest::Colour),
        EvidenceTest::DetailTransfer => ("fine detail turns", TransferTest::Detail),
        EvidenceTest::FeatureDirection => (
            "position along its feature direction turns",
            TransferTest::Direction,
        ),
        EvidenceTest::MemberRegion => (
            "region turns",
            TransferTest::Region {
                control: "the same number of cells from the class's other images, each where \
                          its own relevance is",
            },
        ),
        EvidenceTest::SharedRegion => (
            "region turns",
            TransferTest::Region {
                control: "the same-shaped region from the class's other images",
            },
        ),
    };
    SpaceWording {
        group_note,
        transferred,
        test,
    }
}

/// The captions of a test's four before/after pictures (`spray_verify::examples::KINDS`
/// order): a group member before and after, another class's image before and after.
pub(crate) fn picture_labels(test: TransferTest) -> [&'static str; 4] {
    match test {
        TransferTest::Region { .. } => [
            "cluster member",
            "region filled",
            "other class",
            "region pasted in",
        ],
        TransferTest::Colour => [
            "cluster member",
            "the rest's colours",
            "other class",
            "the group's colours",
        ],
        TransferTest::Detail => [
            "cluster member",
            "fine detail removed",
            "other class",
            "fine detail added",
        ],
        // No pictures: the test changes activations, not pixels.
        TransferTest::Direction => ["", "", "", ""],
    }
}

/// The plain-language line for a tested group (a class's strongest): what was given to other
/// classes' images, how many turned, and what the control and the occlusion did.
pub(crate) fn evidence_sentence(r: &EvidenceRow, test: TransferTest) -> String {
    match test {
        TransferTest::Colour => format!(
            "Giving {} images of other classes the colours (per-channel mean and spread) of \
             {}'s images turns {} of them into “{}” (logit {:+.2} on average; the colours of \
             the class's other images: {}); giving the group's own images the colours of the \
             class's other images lowers the logit by {} (by {} in the rest of the class).",
            r.transplant_images,
            r.group().name(),
            pct(r.transplant_flip_rate),
            r.class_name,
            r.transplant_logit_gain,
            pct(r.transplant_flip_rate_rest),
            pct(r.occlusion_drop),
            pct(r.occlusion_drop_rest)
        ),
        TransferTest::Detail => format!(
            "Adding the fine detail of {}'s images (each image minus its low-pass: a pattern, \
             noise, strokes) to {} images of other classes turns {} of them into “{}” (logit \
             {:+.2} on average; the fine detail of the class's other images: {}); removing the \
             fine detail from the group's own images lowers the logit by {} (by {} in the rest \
             of the class).",
            r.group().name(),
            r.transplant_images,
            pct(r.transplant_flip_rate),
            r.class_name,
            r.transplant_logit_gain,
            pct(r.transplant_flip_rate_rest),
            pct(r.occlusion_drop),
            pct(r.occlusion_drop_rest)
        ),
        TransferTest::Direction => format!(
            "Moving {} images of other classes, in the model's features ({}), along the \
             direction that sets {}'s images apart from the rest of the class, to where the \
             group's images lie, turns {} of them into “{}” (logit {:+.2} on average; the \
             strongest control — the class's other images farthest along it, the same move \
             mirrored, or a random split of the class: {}); moving the group's own images back \
             to the rest's level lowers the logit by {} (by {} in the rest of the class). No \
             pixels were changed: the group's artifact need not be a region.",
            r.transplant_images,
            r.region,
            r.group().name(),
            pct(r.transplant_flip_rate),
            r.class_name,
            r.transplant_logit_gain,
            pct(r.transplant_flip_rate_rest),
            pct(r.occlusion_drop),
            pct(r.occlusion_drop_rest)
        ),
        TransferTest::Region { control } => format!(
            "Pasting {}'s region ({}) onto {} images of other classes turns {} of them into \
             “{}” (logit {:+.2} on average; {control}: {}); \
             filling that region in the cluster's own images lowers the logit by {} (by {} in the \
             rest of the class).",
            r.group().name(),
            r.region,
            r.transplant_images,
            pct(r.transplant_flip_rate),
            r.class_name,
            r.transplant_logit_gain,
            pct(r.transplant_flip_rate_rest),
            pct(r.occlusion_drop),
            pct(r.occlusion_drop_rest)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(node: &str) -> ConceptLayerInfo {
        ConceptLayerInfo {
            node: node.into(),
            channels: 16,
        }
    }

    #[test]
    fn only_the_relevance_space_goes_without_a_note() {
        let w = wording(FeatureSpace::Relevance, EvidenceTest::SharedRegion, &[]);
        assert_eq!(w.group_note, "");
        assert_eq!(w.transferred, "region turns");
        assert!(
            matches!(w.test, TransferTest::Region { control } if control.contains("same-shaped"))
        );
    }

    #[test]
    fn a_concept_group_names_its_layer() {
        let w = wording(
            FeatureSpace::Concept(0),
            EvidenceTest::MemberRegion,
            &[layer("/3/Conv")],
        );
        assert!(
            w.group_note.contains("same channels of layer /3/Conv;"),
            "{}",
            w.group_note
        );
        assert!(
            matches!(w.test, TransferTest::Region { control } if control.contains("own relevance"))
        );
        // a layer the relevance dataset does not list is named by its space
        let w = wording(
            FeatureSpace::Concept(2),
            EvidenceTest::MemberRegion,
            &[layer("/3/Conv")],
        );
        assert!(
            w.group_note.contains("layer concept-2;"),
            "{}",
            w.group_note
        );
    }

    #[test]
    fn a_colour_group_is_told_as_a_colour_transfer() {
        let w = wording(FeatureSpace::Colour, EvidenceTest::ColourTransfer, &[]);
        assert_eq!(w.transferred, "colours turn");
        assert_eq!(w.test, TransferTest::Colour);
        assert!(w.group_note.contains("no region"));
    }

    #[test]
    fn the_evidence_sentence_tells_the_test_of_the_groups_space() {
        use crate::test_fixtures::evidence_row;
        use spray_store::verify::ClusterLevel;
        let row = evidence_row(FeatureSpace::Relevance, ClusterLevel::Cluster, 3);
        let text = evidence_sentence(&row, wording(row.space, row.test, &[]).test);
        assert!(
            text.starts_with("Pasting cluster 3's region (r1c1 r1c2) onto 50 images of other classes turns 60% of them into “cat” (logit +2.50 on average; the same-shaped region from the class's other images: 10%)"),
            "{text}"
        );
        assert!(
            text.ends_with("lowers the logit by 40% (by 5% in the rest of the class)."),
            "{text}"
        );
        let row = evidence_row(FeatureSpace::Colour, ClusterLevel::Split, 1);
        let text = evidence_sentence(&row, wording(row.space, row.test, &[]).test);
        assert!(
            text.starts_with("Giving 50 images of other classes the colours (per-channel mean and spread) of colour split side 1's images turns 60% of them"),
            "{text}"
        );
        let mut row = evidence_row(FeatureSpace::Concept(0), ClusterLevel::Cluster, 2);
        row.test = EvidenceTest::FeatureDirection;
        row.region = "direction at /layer2/conv".into();
        let text = evidence_sentence(&row, wording(row.space, row.test, &[]).test);
        assert!(
            text.starts_with("Moving 50 images of other classes, in the model's features (direction at /layer2/conv), along the direction that sets concept-0 cluster 2's images apart from the rest of the class, to where the group's images lie, turns 60% of them into “cat”"),
            "{text}"
        );
        assert!(text.ends_with("need not be a region."), "{text}");
        row.test = EvidenceTest::DetailTransfer;
        let text = evidence_sentence(&row, wording(row.space, row.test, &[]).test);
        assert!(
            text.starts_with("Adding the fine detail of concept-0 cluster 2's images (each image minus its low-pass: a pattern, noise, strokes) to 50 images of other classes turns 60% of them into “cat”"),
            "{text}"
        );
        assert_eq!(picture_labels(TransferTest::Detail)[3], "fine detail added");
    }
}

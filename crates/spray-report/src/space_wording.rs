//! How the report words a tested group: what a group of its space is (the space table's
//! note), what the verify stage gave other classes' images from it, the captions of its
//! pictures and the sentence a reviewer reads — each from its evidence test's file
//! (`spray_verify::probe`). The sentences around them (`reasons`, `evidence`) only use what
//! these return.

use spray_store::relevance::ConceptLayerInfo;
use spray_store::{EvidenceTest, FeatureSpace};
use spray_verify::probe::{probe, Told, SCREENED_SENTENCE};

use crate::evidence::EvidenceRow;

/// The words for one feature space's groups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpaceWording {
    /// Follows a group's label in the ranking's reason: what the group is, for a reader
    /// (" (images whose relevance flows through …)"); empty for the relevance space, whose
    /// groups the page's clusters already show.
    pub group_note: String,
    /// What of the group turns other classes' images, with its verb: "region turns".
    pub transferred: &'static str,
}

/// The words for a group of `space` measured by `test`; `concept_layers` names a concept
/// space's layer. What a group is comes from the space table (`SpaceSpec::note`), how it was
/// tested from its evidence test's file (`spray_verify::probe`).
pub(crate) fn wording(
    space: FeatureSpace,
    test: EvidenceTest,
    concept_layers: &[ConceptLayerInfo],
) -> SpaceWording {
    SpaceWording {
        group_note: space.note(|i| concept_layers.get(usize::from(i)).map(|l| l.node.clone())),
        transferred: probe(test).wording.transferred,
    }
}

/// The captions of a test's four before/after pictures (`spray_verify::examples::KINDS`
/// order): a group member before and after, another class's image before and after.
pub(crate) fn picture_labels(test: EvidenceTest) -> [&'static str; 4] {
    probe(test).wording.captions
}

/// The plain-language line for a tested group (a class's strongest): what was given to other
/// classes' images, how many turned, and what the control and the occlusion did (a screened
/// row: that they were not measured, and why).
pub(crate) fn evidence_sentence(r: &EvidenceRow) -> String {
    let group = r.group().name();
    let wording = &probe(r.test).wording;
    let screened;
    let template = if r.screened() {
        screened = SCREENED_SENTENCE.replace("{transferred}", wording.transferred);
        screened.as_str()
    } else {
        wording.sentence
    };
    Told {
        group: &group,
        class: &r.class_name,
        region: &r.region,
        images: r.transplant_images,
        flip: r.transplant_flip_rate,
        control_flip: r.transplant_flip_rate_rest,
        gain: r.transplant_logit_gain,
        drop: r.occlusion_drop,
        drop_rest: r.occlusion_drop_rest,
    }
    .fill(template)
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
        assert!(w.group_note.contains("no region"));
    }

    #[test]
    fn the_evidence_sentence_tells_the_test_of_the_groups_space() {
        use crate::test_fixtures::evidence_row;
        use spray_store::verify::ClusterLevel;
        let row = evidence_row(FeatureSpace::Relevance, ClusterLevel::Cluster, 3);
        let text = evidence_sentence(&row);
        assert!(
            text.starts_with("Pasting cluster 3's region (r1c1 r1c2) onto 50 images of other classes turns 60% of them into “cat” (logit +2.50 on average; the same-shaped region from the class's other images: 10%)"),
            "{text}"
        );
        assert!(
            text.ends_with("lowers the logit by 40% (by 5% in the rest of the class)."),
            "{text}"
        );
        let row = evidence_row(FeatureSpace::Colour, ClusterLevel::Split, 1);
        let text = evidence_sentence(&row);
        assert!(
            text.starts_with("Giving 50 images of other classes the colours (per-channel mean and spread, and chroma) of colour split side 1's images turns 60% of them"),
            "{text}"
        );
        let mut row = evidence_row(FeatureSpace::Concept(0), ClusterLevel::Cluster, 2);
        row.test = EvidenceTest::FeatureDirection;
        row.region = "direction at /layer2/conv".into();
        let text = evidence_sentence(&row);
        assert!(
            text.starts_with("Moving 50 images of other classes, in the model's features (direction at /layer2/conv), along the direction that sets concept-0 cluster 2's images apart from the rest of the class, to where the group's images lie, turns 60% of them into “cat”"),
            "{text}"
        );
        assert!(text.ends_with("need not be a region."), "{text}");
        let mut screened = evidence_row(FeatureSpace::Relevance, ClusterLevel::Cluster, 3);
        (screened.transplant_images, screened.transplant_flip_rate) = (10, 0.1);
        (screened.control_images, screened.occluded_images) = (0, 0);
        assert_eq!(
            evidence_sentence(&screened),
            "Given to 10 images of other classes, cluster 3's region turns 10% of them into \
             “cat” (logit +2.50 on average): too few to reach the flag, or the class's \
             strongest group, even if its control turned none, so neither its control nor its \
             occlusion was measured."
        );
        row.test = EvidenceTest::DetailTransfer;
        let text = evidence_sentence(&row);
        assert!(
            text.starts_with("Adding the fine detail of concept-0 cluster 2's images (each image minus its low-pass: a pattern, noise, strokes) to 50 images of other classes turns 60% of them into “cat”"),
            "{text}"
        );
        assert_eq!(picture_labels(row.test)[3], "fine detail added");
    }
}

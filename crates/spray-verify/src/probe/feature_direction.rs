//! [`EvidenceTest::FeatureDirection`], model-side, for an artifact of any shape (a pattern
//! over the whole image, an overlay): the direction that separates the group's activations at
//! a concept layer from the rest of the class's is removed from the group's activations
//! (ablation) and added to other classes' (injection). Measured by [`crate::direction`]; this
//! file says where it runs and how the report tells it.

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::{Method, Probe, Wording};

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::FeatureDirection,
    // Every suspect space's groups, after its pixel-side tests.
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.feature_direction,
    beyond_budget: false,
    method: Method::ModelSide,
    wording: Wording {
        transferred: "position along its feature direction turns",
        // No pictures: the test changes activations, not pixels.
        captions: ["", "", "", ""],
        sentence: SENTENCE,
    },
};

const SENTENCE: &str =
    "Moving {images} images of other classes, in the model's features ({region}), along \
         the direction that sets {group}'s images apart from the rest of the class, to where \
         the group's images lie, turns {flip} of them into “{class}” (logit {gain} on average; \
         the strongest control — the class's other images farthest along it, the same move \
         mirrored, or a random split of the class: {control}); moving the group's own images \
         back to the rest's level lowers the logit by {drop} (by {drop_rest} in the rest of \
         the class). No pixels were changed: the group's artifact need not be a region.";

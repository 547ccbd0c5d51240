//! [`EvidenceTest::FeatureDirection`], model-side, for an artifact of any shape (a pattern
//! over the whole image, an overlay): the direction that separates the group's activations at
//! a concept layer from the rest of the class's is removed from the group's activations
//! (ablation) and added to other classes' (injection). Measured by [`crate::direction`]; this
//! file says where it runs and how the report tells it.

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::{pct, Method, Probe, Told, Wording};

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::FeatureDirection,
    // Every suspect space's groups, after its pixel-side tests.
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.feature_direction,
    method: Method::ModelSide,
    wording: Wording {
        transferred: "position along its feature direction turns",
        // No pictures: the test changes activations, not pixels.
        captions: ["", "", "", ""],
        sentence,
    },
};

fn sentence(r: &Told<'_>) -> String {
    format!(
        "Moving {} images of other classes, in the model's features ({}), along the \
         direction that sets {}'s images apart from the rest of the class, to where the \
         group's images lie, turns {} of them into “{}” (logit {:+.2} on average; the \
         strongest control — the class's other images farthest along it, the same move \
         mirrored, or a random split of the class: {}); moving the group's own images back \
         to the rest's level lowers the logit by {} (by {} in the rest of the class). No \
         pixels were changed: the group's artifact need not be a region.",
        r.images,
        r.region,
        r.group,
        pct(r.flip),
        r.class,
        r.gain,
        pct(r.control_flip),
        pct(r.drop),
        pct(r.drop_rest)
    )
}

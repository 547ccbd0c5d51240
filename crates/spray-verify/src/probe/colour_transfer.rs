//! [`EvidenceTest::ColourTransfer`]: no region — the group's colours (per-channel mean and
//! spread, then mean chroma, `perturb::transfer_colour`) are given to other classes' images, and the group's
//! own images take the colours of the class's other images; the control gives the other
//! images' colours. Why: a colour cast is spread over the whole image and has no region to
//! paste.

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::perturb::transfer_colour;
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::ColourTransfer,
    // The colour space's own test, and on every group of explanations too (relevance and
    // concept spaces), after their own tests. Why: a colour cast the model uses is found in
    // its concept space as well (photos-mobile's warm tint, concept-0 ARI 0.97), and a
    // region or detail test does not carry it.
    also_for: |space| space.role == SpaceRole::Explanation,
    // The switch of the other spaces' groups; a colour-space group is always given it.
    on: |settings| settings.colour_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "colours turn",
        captions: [
            "cluster member",
            "the rest's colours",
            "other class",
            "the group's colours",
        ],
        sentence: SENTENCE,
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    Ok(Some(Plan {
        region: "colour".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(Colours),
        control: Box::new(Colours),
        second_control: None,
    }))
}

/// The whole image's colours: occlusion gives an image another's colours, a transplant
/// gives the recipient the donor's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Colours;

impl Carrier for Colours {
    fn take_away(&self, k: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        if !at.colours.is_empty() {
            let to = &at.colours[(k + at.shift) % at.colours.len()];
            transfer_colour(image, to, at.apply.bounds);
        }
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let d = j % from.donors.len();
        transfer_colour(recipient, &from.colours[d], from.apply.bounds);
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Colours)
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the colours (per-channel mean and spread, and \
         chroma) of {group}'s images turns {flip} of them into “{class}” (logit {gain} on average; the \
         colours of the class's other images: {control}); giving the group's own images the \
         colours of the class's other images lowers the logit by {drop} (by {drop_rest} in the \
         rest of the class).";

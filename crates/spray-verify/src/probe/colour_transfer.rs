//! [`EvidenceTest::ColourTransfer`](spray_store::EvidenceTest::ColourTransfer): no region — the
//! group's colours (per-channel mean and spread, `perturb::transfer_colour`) are given to
//! other classes' images, and the group's own images take the colours of the class's other
//! images; the control gives the other images' colours. Why: a colour cast is spread over
//! the whole image and has no region to paste.

use super::{Carrier, Plan, ProbeInput};

pub(super) fn plan(input: &ProbeInput<'_>) -> Option<Plan> {
    Some(Plan {
        region: "colour".to_string(),
        region_cells: input.grid * input.grid,
        group: Carrier::Colours,
        control: Carrier::Colours,
        second_control: None,
    })
}

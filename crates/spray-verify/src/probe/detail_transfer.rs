//! [`EvidenceTest::DetailTransfer`](spray_store::EvidenceTest::DetailTransfer): no region —
//! the group's fine detail (each image minus its low-pass, `perturb::low_pass`) is added to
//! other classes' images, and the group's own images keep only their low-pass. Why: a pattern
//! spread over the image — scanlines, sensor noise, a caption's strokes — has no region to
//! paste, but lives in the detail.
//!
//! The class's own object has edges in the detail too. Two controls, the stronger counts: the
//! fine detail of the class's other images; and that of the most detailed of them where the
//! model looks (`perturb::detail_energy`: detail weighted by relevance; as many as the group,
//! at most half), each moved so that its
//! relevance centroid lands on the group's (`region::shift_to`). Why: a group of the class's
//! highest-contrast exemplars, or one that is a natural mode of *where* the object is,
//! carries the object's edges strongly or at its place (the tags scenario's clean two-place
//! square: a group of 42 bright squares on one side turned 0.47 of recipients, the other
//! images' detail 0.13). A shortcut pattern is absent from the other images, however
//! detailed and wherever moved.

use super::{Carrier, DetailFrom, Plan, ProbeInput};
use crate::region;

pub(super) fn plan(input: &ProbeInput<'_>) -> Option<Plan> {
    let g = input.grid;
    let group_maps: Vec<&[f32]> = input
        .group
        .iter()
        .map(|&i| input.members[i].map.as_slice())
        .collect();
    let to = region::centroid(&region::mean(&group_maps, g * g), g);
    let shifts: Vec<[isize; 2]> = input
        .rest_rows
        .iter()
        .map(|&i| region::shift_to(&input.members[i].map, to, g, input.size))
        .collect();
    // The most detailed of the rest: the largest detail energy first (ties by position).
    let mut by_energy: Vec<usize> = (0..input.rest_rows.len()).collect();
    let energy = |p: usize| {
        input
            .detail_energy
            .get(input.rest_rows[p])
            .copied()
            .unwrap_or(0.0)
    };
    by_energy.sort_by(|&a, &b| energy(b).total_cmp(&energy(a)).then(a.cmp(&b)));
    let k = input.group.len().min(input.rest_rows.len().div_ceil(2));
    let mut strongest = by_energy[..k].to_vec();
    strongest.sort_unstable();
    Some(Plan {
        region: "fine detail".to_string(),
        region_cells: g * g,
        group: Carrier::Detail(DetailFrom::default()),
        control: Carrier::Detail(DetailFrom::default()),
        second_control: (!strongest.is_empty()).then_some(Carrier::Detail(DetailFrom {
            donors: strongest,
            shifts,
        })),
    })
}

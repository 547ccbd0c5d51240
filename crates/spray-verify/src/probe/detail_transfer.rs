//! [`EvidenceTest::DetailTransfer`]: no region — the group's fine detail (each image minus
//! its low-pass, `perturb::low_pass`) is added to other classes' images, and the group's own
//! images keep only their low-pass. Why: a pattern spread over the image — scanlines, sensor
//! noise, a caption's strokes — has no region to paste, but lives in the detail.
//!
//! The class's own object has edges in the detail too. Two controls, the stronger counts: the
//! fine detail of the class's other images; and that of the most detailed of them where the
//! model looks (`perturb::detail_energy`: detail weighted by relevance; as many as the group,
//! at most half), each moved so that its relevance centroid lands on the group's
//! (`region::shift_to`). Why: a group of the class's
//! highest-contrast exemplars, or one that is a natural mode of *where* the object is,
//! carries the object's edges strongly or at its place (the tags scenario's clean two-place
//! square: a group of 42 bright squares on one side turned 0.47 of recipients, the other
//! images' detail 0.13). A shortcut pattern is absent from the other images, however
//! detailed and wherever moved.
//!
//! Only a group whose detail stands apart from the rest of its class's beyond chance is
//! tested (`ClassDetail::stands_apart`).

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::class_detail::ClassDetail;
use super::{Carrier, Giving, Method, Occluding, PerDonor, Plan, Probe, ProbeInput, Wording};
use crate::perturb::{add_detail, low_pass};
use crate::region;
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::DetailTransfer,
    // Every group of explanations (relevance and concept spaces), after the space's own test.
    also_for: |space| space.role == SpaceRole::Explanation,
    on: |settings| settings.detail_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "fine detail turns",
        captions: [
            "cluster member",
            "fine detail removed",
            "other class",
            "fine detail added",
        ],
        sentence: SENTENCE,
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let g = input.grid;
    let class = ClassDetail::of_class(input)?;
    if !class.stands_apart(input.group, input.settings.seed) {
        return Ok(None);
    }
    let energies = &class.energies;

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
    let energy = |p: usize| energies.get(input.rest_rows[p]).copied().unwrap_or(0.0);
    by_energy.sort_by(|&a, &b| energy(b).total_cmp(&energy(a)).then(a.cmp(&b)));
    let k = input.group.len().min(input.rest_rows.len().div_ceil(2));
    let mut strongest = by_energy[..k].to_vec();
    strongest.sort_unstable();
    Ok(Some(Plan {
        region: "fine detail".to_string(),
        region_cells: g * g,
        group: Box::new(Detail::default()),
        control: Box::new(Detail::default()),
        second_control: (!strongest.is_empty()).then(|| {
            Box::new(Detail {
                donors: strongest,
                shifts,
                ..Detail::default()
            }) as _
        }),
    }))
}

/// The whole image's fine detail (image − low-pass, `perturb::low_pass`): occlusion leaves
/// an image its low-pass, a transplant adds a donor's detail to the recipient. Which donors
/// it takes from, and how their detail is moved.
#[derive(Debug, Default)]
struct Detail {
    /// The donors given from, round-robin (positions in the donor list); empty: every donor.
    donors: Vec<usize>,
    /// Per donor position, its detail's translation (rows, columns in pixels); none where
    /// the list is short.
    shifts: Vec<[isize; 2]>,
    /// Each donor's low-pass (a blur per recipient before: box_blur was 3% of the stage's CPU
    /// on photos-clean).
    smooth: PerDonor<Vec<f32>>,
}

impl Detail {
    /// The donor recipient `j` (counted over the whole transplant) receives from, of `n`.
    fn donor(&self, j: usize, n: usize) -> usize {
        if self.donors.is_empty() {
            j % n
        } else {
            self.donors[j % self.donors.len()]
        }
    }

    fn shift(&self, d: usize) -> [isize; 2] {
        self.shifts.get(d).copied().unwrap_or([0, 0])
    }
}

impl Carrier for Detail {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        *image = low_pass(image, at.apply.width);
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let d = self.donor(j, from.donors.len());
        let apply = from.apply;
        let smooth = self
            .smooth
            .get(d, || low_pass(&from.donors[d], apply.width));
        add_detail(
            recipient,
            (&from.donors[d], &smooth),
            self.shift(d),
            (apply.width, apply.bounds),
        );
    }

    /// Occlusion only: no donors, no shifts.
    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Detail::default())
    }
}

const SENTENCE: &str =
    "Adding the fine detail of {group}'s images (each image minus its low-pass: a pattern, \
         noise, strokes) to {images} images of other classes turns {flip} of them into \
         “{class}” (logit {gain} on average; the fine detail of the class's other images: \
         {control}); removing the fine detail from the group's own images lowers the logit by \
         {drop} (by {drop_rest} in the rest of the class).";

//! [`EvidenceTest::MemberRegion`](spray_store::EvidenceTest::MemberRegion): each image's own
//! region — its `region::member_region_cells` cells furthest above the class's mean map. Why:
//! a concept group's images share which features carry the logit, not where they are (a
//! mark at a random place), so there is no one region. The control is the same: each of the
//! class's other images' own cells.

use super::regions::{self, Regions};
use super::{Method, Plan, Probe, ProbeInput, Wording};
use crate::region;
use crate::Result;
use spray_store::EvidenceTest;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::MemberRegion,
    // Only as its space's own test (the concept spaces').
    also_for: |_| false,
    on: |_| true,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "region turns",
        captions: regions::CAPTIONS,
        sentence: regions::region_sentence!(
            "the same number of cells from the class's other images, each where its own \
             relevance is"
        ),
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let (g, [h, w]) = (input.grid, input.size);
    let count = region::member_region_cells(g);
    // Every member's mask on the same grid: the pixels' cells taken once.
    let pixel_cells = region::pixel_cells(g, h, w);
    let own = |i: usize| {
        region::mask_of_cells(
            &region::member_region(&input.members[i].map, input.class_mean, count),
            g,
            &pixel_cells,
        )
    };
    let masks: Vec<Vec<bool>> = input.group.iter().map(|&i| own(i)).collect();
    if masks.iter().all(|m| !m.contains(&true)) {
        return Ok(None);
    }
    Ok(Some(Plan {
        region: format!("per image: top {count} cells"),
        region_cells: count,
        group: Box::new(Regions::new(masks)),
        control: Box::new(Regions::new(
            input.rest_rows.iter().map(|&i| own(i)).collect(),
        )),
        second_control: None,
    }))
}

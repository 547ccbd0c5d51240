//! [`EvidenceTest::SharedRegion`](spray_store::EvidenceTest::SharedRegion): one region for the
//! whole group — the grid cells where its mean (L1-normalised) map exceeds the rest of the
//! class's by `margin` of the largest excess. The control takes the same-shaped region from
//! the class's other images at the same pixels, moved to where each one's own relevance is
//! (`region::best_shift`), or both (`[verify] control`, the stronger counts). Why both: the
//! same pixels alone read a clean class whose object sits in one of two places as a shortcut
//! (the region holds the object; the other images' same pixels hold background), the moved
//! region alone a clean class whose relevance lies on the image's edges.

use super::regions::{self, Regions};
use super::{Method, Plan, Probe, ProbeInput, Wording};
use crate::region;
use crate::settings::RegionControl;
use crate::Result;
use spray_store::EvidenceTest;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::SharedRegion,
    // Only as its space's own test (the relevance maps').
    also_for: |_| false,
    on: |_| true,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "region turns",
        captions: regions::CAPTIONS,
        sentence: regions::region_sentence!("the same-shaped region from the class's other images"),
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let (g, [h, w]) = (input.grid, input.size);
    let maps = |rows: &[usize]| -> Vec<&[f32]> {
        rows.iter()
            .map(|&i| input.members[i].map.as_slice())
            .collect()
    };
    let cells = region::cluster_region(
        &maps(input.group),
        &maps(input.rest),
        g,
        input.settings.margin,
    );
    if cells.is_empty() {
        return Ok(None);
    }
    // The region and each control image's moved copy on the same grid: the pixels' cells
    // taken once.
    let pixel_cells = region::pixel_cells(g, h, w);
    let mask = region::mask_of_cells(&cells, g, &pixel_cells);
    let moved = || -> Vec<Vec<bool>> {
        input
            .rest_rows
            .iter()
            .map(|&i| {
                let moved = region::best_shift(&cells, &input.members[i].map, g);
                region::mask_of_cells(&moved, g, &pixel_cells)
            })
            .collect()
    };
    let same = vec![mask.clone(); input.rest_rows.len()];
    let control = match input.settings.control {
        RegionControl::SamePixels | RegionControl::Both => same,
        RegionControl::Moved => moved(),
    };
    // Only where some image's region really moves is the second control run.
    let second_control = (input.settings.control == RegionControl::Both)
        .then(moved)
        .filter(|moved| *moved != control)
        .map(|moved| Box::new(Regions(moved)) as _);
    Ok(Some(Plan {
        region: region::describe(&cells, g),
        region_cells: cells.len(),
        group: Box::new(Regions(vec![mask; input.group.len()])),
        control: Box::new(Regions(control)),
        second_control,
    }))
}

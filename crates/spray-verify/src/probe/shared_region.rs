//! [`EvidenceTest::SharedRegion`](spray_store::EvidenceTest::SharedRegion): one region for the
//! whole group — the grid cells where its mean (L1-normalised) map exceeds the rest of the
//! class's by `margin` of the largest excess. The control takes the same-shaped region from
//! the class's other images at the same pixels, moved to where each one's own relevance is
//! (`region::best_shift`), or both (`[verify] control`, the stronger counts). Why both: the
//! same pixels alone read a clean class whose object sits in one of two places as a shortcut
//! (the region holds the object; the other images' same pixels hold background), the moved
//! region alone a clean class whose relevance lies on the image's edges. Both controls leave
//! out the few images of the rest that have the group's relevance in the region
//! (`control_donors`): members the analysis missed, whose region would turn recipients as the
//! group's does.

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
    beyond_budget: false,
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
    let donors = {
        let share = |rows: &[usize]| -> Vec<f64> {
            rows.iter()
                .map(|&i| region::share_in(&input.members[i].map, &cells))
                .collect()
        };
        control_donors(&share(input.group), &share(input.rest_rows))
    };
    let control = match input.settings.control {
        RegionControl::SamePixels | RegionControl::Both => same,
        RegionControl::Moved => moved(),
    };
    // Only where some image's region really moves is the second control run.
    let second_control = (input.settings.control == RegionControl::Both)
        .then(moved)
        .filter(|moved| *moved != control)
        .map(|moved| Box::new(Regions::new(moved).giving_from(donors.clone())) as _);
    Ok(Some(Plan {
        region: region::describe(&cells, g),
        region_cells: cells.len(),
        group: Box::new(Regions::new(vec![mask; input.group.len()])),
        control: Box::new(Regions::new(control).giving_from(donors)),
        second_control,
    }))
}

/// The positions among the control's donors (`rest_rows`) that the controls give from, by
/// each image's share of relevance in the region (`region::share_in`): every one but the
/// images that look like the group there — a share of at least [`LOOK_ALIKE`] of the group's
/// median — while those are at most [`MAX_LOOK_ALIKE`] of them (empty: every one). Why: an
/// image the analysis left out of the group but that carries what the group carries (a ruler
/// it missed) turns recipients from the control as it would from the group, and takes its
/// share off the group's effect. On a held-out ResNet 9 of the 36 ruler images were in the
/// rest, each with 0.66–0.77 of its relevance on the left strip (the group's median: 0.84), no
/// other image above 0.26; without them the control turned fewer recipients and the ruler's
/// effect rose from +0.26 to +0.31 (benches/RESULTS.md). Where many look alike, the region is
/// where the class's images have their relevance anyway (a class whose relevance lies on the
/// edges), and they are its fair control.
fn control_donors(group: &[f64], rest: &[f64]) -> Vec<usize> {
    let mut sorted = group.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else {
        return Vec::new();
    };
    let alike: Vec<bool> = rest
        .iter()
        .map(|&s| median > 0.0 && s >= LOOK_ALIKE * median)
        .collect();
    let count = alike.iter().filter(|&&a| a).count();
    if count == 0 || count as f64 > MAX_LOOK_ALIKE * rest.len() as f64 {
        return Vec::new();
    }
    (0..rest.len()).filter(|&p| !alike[p]).collect()
}

/// A rest image looks like the group where its share of relevance in the region is at least
/// this part of the group's median share.
const LOOK_ALIKE: f64 = 0.5;

/// Look-alikes are left out of the control only while they are at most this share of the rest.
const MAX_LOOK_ALIKE: f64 = 0.25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_of_the_group_are_left_out_of_the_control_while_they_are_few() {
        let group = [0.9, 0.8, 0.85];
        // Median 0.85: images from 0.425 on look alike.
        let mut rest = vec![0.1; 10];
        rest[3] = 0.7;
        rest[7] = 0.43;
        let donors = control_donors(&group, &rest);
        assert_eq!(donors, [0, 1, 2, 4, 5, 6, 8, 9]);
        // None alike: every donor (empty).
        assert!(control_donors(&group, &[0.1; 10]).is_empty());
        // A third alike: the region is where the class's relevance is; every donor.
        let mut common = vec![0.1; 9];
        common[..3].iter_mut().for_each(|s| *s = 0.8);
        assert!(control_donors(&group, &common).is_empty());
        // A group with no relevance there, or no group: every donor.
        assert!(control_donors(&[0.0, -0.1], &rest).is_empty());
        assert!(control_donors(&[], &rest).is_empty());
    }
}

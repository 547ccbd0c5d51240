//! The evidence tests ([`spray_store::EvidenceTest`]), one file each: from a group and the
//! rest of its class, a [`Plan`] of what the test takes from the group's images and gives to
//! other classes' images, and what its controls take from the class's other images instead.
//! [`crate::evidence`] then measures every test the same way (occlusion, transplant, the
//! stronger control). A new test is a variant of `EvidenceTest`, the row of the space table
//! that uses it, one file here and its line in [`plan`].

mod colour_transfer;
mod detail_transfer;
mod member_region;
mod shared_region;

use spray_store::EvidenceTest;

use crate::members::Member;
use crate::perturb::{add_detail, low_pass, occlude, paste, transfer_colour};
use crate::settings::{Fill, VerifySettings};

/// What a test changes in one set of images.
#[derive(Debug, Clone, PartialEq)]
pub enum Carrier {
    /// One pixel mask per image (true = changed): occlusion fills it, a transplant pastes it.
    Regions(Vec<Vec<bool>>),
    /// The whole image's colours (per-channel mean and spread): occlusion gives an image
    /// another's colours, a transplant gives the recipient the donor's.
    Colours,
    /// The whole image's fine detail (image − low-pass, `perturb::low_pass`): occlusion
    /// leaves an image its low-pass, a transplant adds a donor's detail to the recipient.
    Detail(DetailFrom),
}

impl Carrier {
    /// The carrier that takes away from the images at `positions` only (a region per image
    /// is kept for those).
    pub fn subset(&self, positions: &[usize]) -> Carrier {
        match self {
            Carrier::Regions(masks) => {
                Carrier::Regions(positions.iter().map(|&p| masks[p].clone()).collect())
            }
            Carrier::Colours => Carrier::Colours,
            // Occlusion only: no donors, no shifts.
            Carrier::Detail(_) => Carrier::Detail(DetailFrom::default()),
        }
    }
}

/// Which donors a fine-detail transfer takes from, and how their detail is moved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetailFrom {
    /// The donors given from, round-robin (positions in the donor list); empty: every donor.
    pub donors: Vec<usize>,
    /// Per donor position, its detail's translation (rows, columns in pixels); none where
    /// the list is short.
    pub shifts: Vec<[isize; 2]>,
}

impl DetailFrom {
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

/// A test of one group, ready to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How the evidence row describes what was changed (`region`), and its size in cells.
    pub region: String,
    pub region_cells: usize,
    /// What is taken from (occlusion) and given from (transplant) the group's images.
    pub group: Carrier,
    /// The control: the same taken from and given from the class's other images (the
    /// `rest` rows); the occlusion of the rest uses it too.
    pub control: Carrier,
    /// A second control, where the test has one that differs; the stronger counts.
    pub second_control: Option<Carrier>,
}

/// What a test sees of a class when it plans a group's test.
pub struct ProbeInput<'a> {
    pub members: &'a [Member],
    /// The class's mean map (L1-normalised maps), g × g.
    pub class_mean: &'a [f64],
    /// The group's member positions, and every other member's.
    pub group: &'a [usize],
    pub rest: &'a [usize],
    /// The rest's members that serve as the control's donors (`rest`, spread to at most
    /// `transplant_images`).
    pub rest_rows: &'a [usize],
    pub grid: usize,
    /// Input height and width.
    pub size: [usize; 2],
    pub settings: &'a VerifySettings,
    /// Per member, the mean square of its image's fine detail (`perturb::detail_energy`);
    /// empty when no fine-detail transfer is run.
    pub detail_energy: &'a [f64],
}

/// The plan of `test` for the group, or `None` when the test has nothing to change (an empty
/// region) or changes no pixels (the model-side test, `crate::direction`).
pub fn plan(test: EvidenceTest, input: &ProbeInput<'_>) -> Option<Plan> {
    match test {
        EvidenceTest::SharedRegion => shared_region::plan(input),
        EvidenceTest::MemberRegion => member_region::plan(input),
        EvidenceTest::ColourTransfer => colour_transfer::plan(input),
        EvidenceTest::DetailTransfer => detail_transfer::plan(input),
        EvidenceTest::FeatureDirection => None,
    }
}

/// How the carrier acts on images: pixel bounds for colours, the fill and seed for regions.
pub struct Apply<'a> {
    pub width: usize,
    pub fill: Fill,
    pub seed: u64,
    pub bounds: &'a [(f32, f32); 3],
}

impl Apply<'_> {
    /// Occlusion: image k loses its region (filled, seeded by its member position
    /// `rows[k]`) or its fine detail, or takes the colours of `colours[(k + shift) % len]`
    /// (shift 1 when the images are the colours' own, so that each takes another's).
    pub fn take_away(
        &self,
        originals: &[Vec<f32>],
        carrier: &Carrier,
        rows: &[usize],
        colours: &[[(f32, f32); 3]],
        shift: usize,
    ) -> Vec<Vec<f32>> {
        originals
            .iter()
            .enumerate()
            .map(|(k, original)| {
                let mut t = original.clone();
                match carrier {
                    Carrier::Colours => {
                        if !colours.is_empty() {
                            let to = &colours[(k + shift) % colours.len()];
                            transfer_colour(&mut t, to, self.bounds);
                        }
                    }
                    Carrier::Detail(_) => t = low_pass(&t, self.width),
                    Carrier::Regions(masks) => occlude(
                        &mut t,
                        &masks[k],
                        self.width,
                        self.fill,
                        self.seed ^ rows[k] as u64,
                    ),
                }
                t
            })
            .collect()
    }

    /// Transplant: recipient j receives from donor j mod |donors| its region, its colours or
    /// its fine detail;
    /// `recipients` are the recipients from position `first` on (a test measured in steps
    /// pairs each recipient with the same donor as one measured at once).
    pub fn give(
        &self,
        (recipients, first): (&[Vec<f32>], usize),
        donors: &[Vec<f32>],
        carrier: &Carrier,
        donor_colours: &[[(f32, f32); 3]],
    ) -> Vec<Vec<f32>> {
        recipients
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let mut t = t.clone();
                let d = (first + j) % donors.len();
                match carrier {
                    Carrier::Colours => transfer_colour(&mut t, &donor_colours[d], self.bounds),
                    Carrier::Detail(from) => {
                        let d = from.donor(first + j, donors.len());
                        add_detail(&mut t, &donors[d], from.shift(d), (self.width, self.bounds));
                    }
                    Carrier::Regions(masks) => paste(&mut t, &donors[d], &masks[d]),
                }
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_away_fills_each_mask_and_give_pastes_round_robin() {
        let bounds = [(0.0, 1.0); 3];
        let apply = Apply {
            width: 2,
            fill: Fill::Mean,
            seed: 0,
            bounds: &bounds,
        };
        // 3 channels of 1 × 2 pixels.
        let image = vec![1.0, 3.0, 1.0, 3.0, 1.0, 3.0];
        let mask = vec![false, true];
        let taken = apply.take_away(
            std::slice::from_ref(&image),
            &Carrier::Regions(vec![mask.clone()]),
            &[0],
            &[],
            0,
        );
        assert_eq!(taken[0], vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let donors = vec![vec![9.0; 6], vec![7.0; 6]];
        let carrier = Carrier::Regions(vec![mask.clone(), mask]);
        let given = apply.give(
            (&[image.clone(), image.clone(), image.clone()], 0),
            &donors,
            &carrier,
            &[],
        );
        let second: Vec<f32> = given.iter().map(|t| t[1]).collect();
        assert_eq!(second, [9.0, 7.0, 9.0]);
        assert!(given.iter().all(|t| t[0] == 1.0));
        // From position 1 on: the pairing of a transplant made at once.
        let later = apply.give((&[image.clone(), image.clone()], 1), &donors, &carrier, &[]);
        let second: Vec<f32> = later.iter().map(|t| t[1]).collect();
        assert_eq!(second, [7.0, 9.0]);
    }
}

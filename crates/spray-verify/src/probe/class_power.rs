//! What the pattern and sharpness transfers read of a class's images ([`ClassPower`]): each
//! member's power spectrum, taken once and read twice — summed over the class and over the
//! pattern transfer's candidate groups, and into each member's energy per octave band (the
//! sharpness transfer's screen). Why together: each screen transformed every member of every
//! class on its own, a tenth of the verify stage's samples on a 128 px scenario, half of it
//! the same transforms twice (benches/RESULTS.md). The figures are the same bits either way:
//! a band's energy is the sum of its bins' power in bin order, as the band energies were
//! always added (`spectrum::band_energies_of_power`, a test against the first reading).

use std::rc::Rc;

use spray_store::EvidenceTest;

use super::member_statistics::{add_to, MemberStatistics};
use super::{CacheKey, ProbeInput};
use crate::groups::TestedGroup;
use crate::spectrum::{band_count, band_energies_of_power, power};
use crate::Result;

/// A class's power spectra, read one image at a time (a class of thousands is never held at
/// once).
pub(super) struct ClassPower {
    /// Each member's [`band_energies_of_power`].
    pub(super) energies: MemberStatistics,
    /// The sum over the class's members of each one's [`power`].
    pub(super) sum: Vec<f64>,
    /// The same sum over each of [`pattern_candidates`]' groups, beside the group's member
    /// positions (none where the pattern transfer is off); read by [`ClassPower::group_sum`].
    sums: Vec<(Vec<usize>, Vec<f64>)>,
}

impl ClassPower {
    /// The class's, computed once whichever of the two tests asks first.
    pub(super) fn of_class(input: &ProbeInput<'_>) -> Result<Rc<Self>> {
        input
            .cache
            .get_or_try(CacheKey::Power, || ClassPower::of(input))
    }

    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let [height, width] = input.size;
        let len = 3 * height * width;
        let candidates = pattern_candidates(input);
        // Each member's candidate groups, so that its spectrum is added to each of them.
        let mut in_groups: Vec<Vec<usize>> = vec![Vec::new(); input.members.len()];
        for (k, g) in candidates.iter().enumerate() {
            for &m in &g.members {
                if let Some(at) = in_groups.get_mut(m) {
                    at.push(k);
                }
            }
        }
        let mut sum = vec![0.0f64; len];
        let mut sums = vec![vec![0.0f64; len]; candidates.len()];
        let mut energies = Vec::with_capacity(input.members.len());
        for (m, groups) in input.members.iter().zip(&in_groups) {
            let p = power(&input.images.tensor(m.image_index)?, width);
            add_to(&mut sum, &p);
            for &k in groups {
                add_to(&mut sums[k], &p);
            }
            energies.push(band_energies_of_power(&p, width, height));
        }
        Ok(ClassPower {
            energies: MemberStatistics::from_rows(energies, 3 * band_count(width, height)),
            sum,
            sums: candidates
                .iter()
                .map(|g| g.members.clone())
                .zip(sums)
                .collect(),
        })
    }

    /// The power sum over the candidate group with exactly these members (none where it is
    /// not one of [`pattern_candidates`]; no two of a class's groups hold the same members,
    /// `groups::class_groups`).
    pub(super) fn group_sum(&self, members: &[usize]) -> Option<&[f64]> {
        self.sums
            .iter()
            .find(|(m, _)| m.as_slice() == members)
            .map(|(_, sum)| sum.as_slice())
    }
}

/// The groups the pattern transfer may test (where it is on): those it runs on, the budget's
/// and the reserve's, of at most half the class — a larger group that holds more than the
/// rest at some frequency is, where seen, the rest *lacking* it (the complement of blurred or
/// low-resolution images), which is the spectrum transfer's to test.
pub(super) fn pattern_candidates<'a>(input: &ProbeInput<'a>) -> Vec<&'a TestedGroup> {
    let test = EvidenceTest::PatternTransfer;
    input
        .groups
        .iter()
        .chain(input.reserve)
        .filter(|g| {
            let space = g.id.space.spec();
            super::tests_of(space).contains(&test) && super::runs(space, test, input.settings)
        })
        .filter(|g| 2 * g.members.len() <= input.members.len())
        .collect()
}

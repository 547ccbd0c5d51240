//! [`EvidenceTest::SpectrumTransfer`]: no region — each recipient takes a group member's
//! amplitude spectrum above a few cycles per image (`spectrum::give_amplitudes`), keeping its
//! own phases and coarse amplitudes; the group's own images take the amplitudes of the class's
//! other images. Why: how an image was made — compressed hard, blurred, noisy, scanned —
//! is a difference in how much of each fine frequency it holds, not in any one place, and a
//! difference of *less* (a hard recompression's lost texture) cannot be added the way the
//! fine-detail transfer adds a pattern. On a held-out ResNet whose "square" relied on a hard
//! JPEG recompression (stamped on other classes' images, 36% turned), no other test carried
//! it (+0.10, ranked last); this one did (benches/RESULTS.md).
//!
//! The phases, which hold where the object is, stay the recipient's, so the object's shape
//! is not what is transferred; the control gives the class's other images' amplitudes.
//!
//! Only a group holding less fine energy than the rest of its class is tested
//! (`fine_energy_ratio`), at most two a class (`ClassSpectra`): more is the fine-detail and
//! sharpness transfers' to test, and strong fine amplitudes carry the object's own edges too.
//!
//! The occlusion columns say little here: an image given another's fine amplitudes under its
//! own phases is damaged whatever it carried (on the held-out ResNet the rest of "square"
//! lost 62% of its logit that way, the recompressed group 41%). The row's verdict rests on the
//! transplant against its control, which suffer the same damage; `needs_loss` is false.

use std::rc::Rc;

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::member_statistics::MemberStatistics;
use super::{Carrier, Giving, Method, Occluding, PerDonor, Plan, Probe, ProbeInput, Wording};
use crate::spectrum::{amplitudes, fine_energy, give_amplitudes};
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::SpectrumTransfer,
    // Every group of explanations and of the colour space, after the space's own test (the
    // compression space's own test is this one: its groups are files compressed harder than
    // the rest of their class, `groups::blockier_than_rest`). Why the colour space too: its
    // groups are images that differ globally, as a whole-image process makes them (in the
    // NumPy reference, the held-out recompression's strongest group was a colour one; in
    // spray its flagged rows were concept-space groups).
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.spectrum_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "spectrum turns",
        captions: [
            "cluster member",
            "the rest's spectrum",
            "other class",
            "the group's spectrum",
        ],
        sentence: SENTENCE,
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::SpectrumTransfer, || ClassSpectra::of(input))?;
    if !class.chosen.iter().any(|m| m.as_slice() == input.group) {
        return Ok(None);
    }
    // The amplitudes of the first of the rest (the control's donors), which the group's
    // images take in turn: each a real image's spectrum (a mean of spectra is smoother than
    // any image, and took a third of the class logit from the rest's own images). The
    // control gives from the same images in the same order, so it starts with them.
    let rest = input
        .rest_rows
        .iter()
        .take(OCCLUSION_SPECTRA)
        .map(|&i| {
            let t = input.images.tensor(input.members[i].image_index)?;
            Ok(Rc::new(amplitudes(&t, input.size[1])))
        })
        .collect::<Result<Vec<Rc<Vec<f32>>>>>()?;
    let rest: Rc<[Rc<Vec<f32>>]> = rest.into();
    Ok(Some(Plan {
        region: "spectrum".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(Amplitudes::new(rest.clone(), &[])),
        control: Box::new(Amplitudes::new(rest.clone(), &rest)),
        second_control: None,
    }))
}

/// What the test computes once per class: which of its groups it tests.
struct ClassSpectra {
    /// The member positions of the groups tested: those holding less fine energy than the
    /// rest of the class ([`fine_energy_ratio`] at most 1 / [`SPECTRUM_RATIO`]), at most
    /// [`MAX_GROUPS`], the least first (ties in test order).
    chosen: Vec<Vec<usize>>,
}

impl ClassSpectra {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let energies = MemberStatistics::of(input, 3, |t| fine_energy(t, input.size[1]).to_vec())?;
        let chosen = super::fewest_by_key(input, EvidenceTest::SpectrumTransfer, MAX_GROUPS, |g| {
            let group = energies.mean(g.members.iter().copied());
            let rest = energies.mean(g.rest(input.members.len()));
            let ratio = fine_energy_ratio(&group, &rest)?;
            (ratio <= 1.0 / SPECTRUM_RATIO).then_some(ratio)
        });
        Ok(ClassSpectra { chosen })
    }
}

/// At most this many groups of a class are tested by this test, those holding the least fine
/// energy against the rest first. Why a cap: the spaces find the same images more than once
/// (a recompressed group was the first group of two concept spaces, at 0.64 and 0.65 of the
/// rest's fine energy), and on a class that damaged images fall into, every group with less
/// fine energy turns a fifth of the recipients beyond its control and runs to 90 recipients
/// (benches/RESULTS.md).
const MAX_GROUPS: usize = 2;

/// How many of the rest's spectra the group's images take in turn when theirs is taken away.
const OCCLUSION_SPECTRA: usize = 16;

/// How much less fine energy a group must hold than the rest of its class to be tested: in
/// some channel, the root of their mean energy above the cut a factor of at least this apart.
/// Why: the transfer gives recipients the group's amplitudes and the control the rest's, so
/// where the two are alike the test measures the same change twice and its effect is near
/// zero. At 1.4 the held-out recompression was still flagged (+0.37) and the test had 25 rows
/// on photos where 1.25 had 40 (benches/RESULTS.md).
const SPECTRUM_RATIO: f64 = 1.4;

/// A group's mean fine energy against the rest's, in root, in the channel where it is least;
/// `None` where the rest has none in any channel (nothing holds less). A group is tested only
/// where this is at most 1 / [`SPECTRUM_RATIO`]. Why only less: a group with *more* fine
/// content than the rest (noise, lines, a texture) is what the fine-detail transfer tests, by
/// adding it (`detail_transfer.rs`), and the sharpness transfer, by filtering the recipient's
/// own detail (`sharpness_transfer.rs`); a loss of fine content is what only this test can give.
/// And a group with more fine energy gives recipients its strong fine amplitudes in every
/// orientation it holds — the object's own edges among them — so the test partly transfers
/// the object: on photos-clean the strongest such row of a clean class reached +0.24 (a
/// "cross" group of sharp images, 1.7× the rest's fine energy), while every shortcut this
/// test carried held less (0.54–0.68×) and the strongest clean row with less was +0.13
/// (benches/RESULTS.md).
fn fine_energy_ratio(group: &[f64], rest: &[f64]) -> Option<f64> {
    group
        .iter()
        .zip(rest)
        .filter(|(_, &r)| r > 0.0)
        .map(|(&g, &r)| (g.max(0.0) / r).sqrt())
        .min_by(f64::total_cmp)
}

/// The whole image's fine amplitudes: occlusion gives image k the amplitudes of one of the
/// class's other images (`rest[(k + shift) % len]`: with the shift of 1 that an occlusion of
/// the rest itself has, image k, the rest's k-th, never takes its own), a transplant gives the
/// recipient its donor's.
#[derive(Debug)]
struct Amplitudes {
    /// The rest's spectra an occluded image takes in turn.
    rest: Rc<[Rc<Vec<f32>>]>,
    /// Each donor's amplitudes.
    given: PerDonor<Vec<f32>>,
}

impl Amplitudes {
    /// `known`: the amplitudes of the first donors, where they are known already.
    fn new(rest: Rc<[Rc<Vec<f32>>]>, known: &[Rc<Vec<f32>>]) -> Self {
        Amplitudes {
            rest,
            given: PerDonor::known(known),
        }
    }
}

impl Carrier for Amplitudes {
    fn take_away(&self, k: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        if self.rest.is_empty() {
            return;
        }
        let rest = &self.rest[(k + at.shift) % self.rest.len()];
        give_amplitudes(image, rest, (at.apply.width, at.apply.bounds));
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let d = j % from.donors.len();
        let apply = from.apply;
        let amplitude = self
            .given
            .get(d, || amplitudes(&from.donors[d], apply.width));
        give_amplitudes(recipient, &amplitude, (apply.width, apply.bounds));
    }

    /// Occlusion only: no donors.
    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Amplitudes::new(self.rest.clone(), &[]))
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the fine amplitude spectrum of {group}'s images \
         (how much of each fine frequency they hold: compression, blur, noise, lines; each \
         image keeps its own shapes) turns {flip} of them into “{class}” (logit {gain} on \
         average; the spectrum of the class's other images: {control}); giving the group's own \
         images the class's other images' spectrum lowers the logit by {drop} (by {drop_rest} \
         in the rest of the class).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::fake::{class_zero_evidence, rows_of};
    use crate::members::KnownLogits;
    use crate::spectrum::fake::{checker_classes, CHECKER};
    use crate::VerifySettings;

    /// The spectrum transfer on 8 × 8 images (4 × 4 has no bin at 4 cycles): three class-0
    /// images are smooth — the shortcut is a *lack* of fine texture, as a hard recompression
    /// leaves — three carry the class's object and the texture every other image has. Given a
    /// smooth image's amplitudes, a textured class-1 image keeps its phases but loses its
    /// texture and turns; given the rest's, it does not; the smooth images, given the rest's
    /// amplitudes, gain the texture and lose their class.
    #[test]
    fn a_spectrum_shortcut_turns_recipients_and_its_images_lose_it_without_it() {
        // Class 0's model holds the checkerboard *against* the class (a smoothed,
        // "recompressed" look is its shortcut); class 1 counts channel 2.
        // Class 0: three smooth images without the object (logit 14.1 against 6.4), three
        // textured ones with it (44.8 against 6.4); class 1: textured, no object (12.8
        // against 38.4; without their texture, 110 against 38.4).
        let (mut model, images, by_class, analysed) =
            checker_classes((-4.0, 1.0), [0.02, 0.4, 0.4]);
        let settings = VerifySettings {
            detail_transfer: false,
            colour_transfer: false,
            spectrum_transfer: true,
            ..VerifySettings::default()
        };
        let rows = class_zero_evidence(
            &mut model,
            (&images, &by_class, &analysed),
            (&settings, &KnownLogits::new()),
            (2, [CHECKER, CHECKER]),
        );
        let spectrum = rows_of(&rows, EvidenceTest::SpectrumTransfer);
        // Only the smooth group holds less fine energy than the rest of its class: the
        // textured group (cluster 1) has more, which is the fine-detail transfer's to test.
        assert_eq!(spectrum.len(), 1);
        let shortcut = spectrum[0];
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert_eq!(shortcut.region, "spectrum");
        // Given the smooth images' amplitudes, every class-1 image loses its texture and
        // turns; given the rest's (its own texture), none does.
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        // Given the rest's texture, the smooth images lose their class.
        assert!(shortcut.occlusion_drop > 0.9, "{}", shortcut.occlusion_drop);
        assert_eq!(shortcut.accuracy_after, 0.0);
    }

    #[test]
    fn only_groups_with_less_fine_energy_than_the_rest_are_tested() {
        let tested = |g: [f64; 3], r: [f64; 3]| {
            fine_energy_ratio(&g, &r).is_some_and(|x| x <= 1.0 / SPECTRUM_RATIO)
        };
        let e = [1.0, 2.0, 3.0];
        assert!(!tested(e, e));
        // 20% less in root in one channel: alike; 40% less: tested (the channel where it is
        // least counts); 50% more: not this test's (the sharpness transfer's).
        assert!(!tested([1.0, 2.0 * 0.8f64.powi(2), 3.0], e));
        assert!(tested([1.0, 2.0 * 1.5f64.powi(2), 3.0 * 0.6f64.powi(2)], e));
        let ratio = fine_energy_ratio(&[1.0, 2.0, 3.0 * 0.6f64.powi(2)], &e).unwrap();
        assert!((ratio - 0.6).abs() < 1e-12, "{ratio}");
        assert!(!tested([1.0, 2.0 * 1.5f64.powi(2), 3.0], e));
        // None at all where the rest has some: tested; a rest with none: nothing is less.
        assert!(tested([0.0, 2.0, 3.0], e));
        assert_eq!(fine_energy_ratio(&e, &[0.0; 3]), None);
    }

    #[test]
    fn fine_energy_is_zero_for_a_flat_image_and_grows_with_noise() {
        let (w, h) = (16, 16);
        let flat = vec![0.5f32; 3 * w * h];
        assert!(fine_energy(&flat, w).iter().all(|&e| e < 1e-9));
        // Alternate rows in the red channel only: energy there, none in the others.
        let mut lines = flat.clone();
        (0..w * h)
            .filter(|p| (p / w).is_multiple_of(2))
            .for_each(|p| lines[p] = 1.0);
        let e = fine_energy(&lines, w);
        assert!(e[0] > 1.0 && e[1] < 1e-9 && e[2] < 1e-9, "{e:?}");
    }
}

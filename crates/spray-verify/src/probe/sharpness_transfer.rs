//! [`EvidenceTest::SharpnessTransfer`]: no region, nothing of the group's content — what the
//! group's images hold on average beyond the rest of their class in each octave of fine
//! frequencies (the root of their mean energy per band over the rest's, per channel: a
//! *filter*) is applied to other classes' images' own spectra, and its inverse to the group's
//! own. Why: an oversharpened image (a phone camera's or an app's unsharp mask: halos along
//! every edge) differs from the rest of its class in how strong its detail is, rising with
//! frequency, everywhere — not in any one place, not in what it shows. The fine-detail
//! transfer adds the group's own detail (its edges, its object), and its control — the rest's
//! sharpest images' detail — turns as many; the spectrum transfer gives a donor's fine
//! amplitudes, which carry its edges in every orientation; one gain for the whole fine band
//! over-boosts the coarse octaves, where natural images hold most of their energy, and
//! under-boosts the finest, where an unsharp mask acts most (on a held-out ResNet whose
//! "crescent" relied on oversharpening, the sharpened images' own group given one gain
//! turned 8% of other classes' images, per octave 42%; benches/RESULTS.md).
//!
//! The filter is a *mean* over the group against the rest, so what varies from image to image
//! averages out; each recipient keeps its own phases and its own content. Two controls, the
//! stronger counts: the same filter between two halves of the class's other images (what
//! averaging that many images leaves by chance), and the group's filter inverted (a class
//! that any change of that size turns recipients into).
//!
//! Only groups whose finest octave holds more energy than the rest's are tested
//! ([`finest_gain`] at least [`MIN_GAIN`]), at most [`MAX_GROUPS`] a class, the sharpest
//! first — and chosen among every group of the class worth testing, not only those within the
//! budget (`Probe::beyond_budget`): the oversharpened images were a small concept cluster
//! that the budget's round-robin did not reach.

use std::rc::Rc;

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::class_power::ClassPower;
use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::spectrum::{band_count, filter_bands};
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::SharpnessTransfer,
    // Every suspect space's groups, after the space's own test: a whole-image process is
    // gathered by the concept layers and the image statistics as much as by the maps.
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.sharpness_transfer,
    beyond_budget: true,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "sharpness turns",
        captions: [
            "cluster member",
            "its sharpness taken away",
            "other class",
            "the group's sharpness given",
        ],
        sentence: SENTENCE,
    },
};

/// At most this many groups of a class are tested, the sharpest first. Why a cap: the spaces
/// find the same images more than once, and every class has groups of naturally detailed
/// images (textured backgrounds) that hold more fine energy than the rest.
const MAX_GROUPS: usize = 2;

/// How much more energy, in root, a group's finest octave must hold than the rest's (in the
/// channel where it holds most) to be tested. Why 1.4, the spectrum transfer's ratio the other
/// way: on the held-out oversharpened "crescent" the group of its sharpened images stood at
/// 2.5, the largest of its class's; the groups of natural detail hold more in the coarser
/// octaves than in the finest (benches/RESULTS.md).
const MIN_GAIN: f64 = 1.4;

/// The largest gain of a band's amplitudes either way (×9 or ÷9 in energy). Why a cap: a band
/// the rest nearly lacks (a smooth render, a blurred class) would otherwise raise a
/// recipient's faint noise into a texture no camera makes.
const MAX_GAIN: f64 = 3.0;

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::SharpnessTransfer, || {
            ClassSharpness::of(input)
        })?;
    if !class.chosen.iter().any(|m| m.as_slice() == input.group) {
        return Ok(None);
    }
    let mean = |rows: &[usize]| class.mean(rows);
    let group = gains(&mean(input.group), &mean(input.rest));
    // Two halves of the class's other images, alternately in image order: a split that knows
    // nothing of what the images show.
    let even: Vec<usize> = input.rest.iter().copied().step_by(2).collect();
    let odd: Vec<usize> = input.rest.iter().copied().skip(1).step_by(2).collect();
    let chance = gains(&mean(&even), &mean(&odd));
    let inverted: Vec<f64> = group.iter().map(|g| 1.0 / g).collect();
    Ok(Some(Plan {
        region: "sharpness".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(BandFilter(Rc::new(group))),
        control: Box::new(BandFilter(Rc::new(chance))),
        second_control: Some(Box::new(BandFilter(Rc::new(inverted)))),
    }))
}

/// What the test computes once per class: each member's energy per channel and octave, and
/// which of its groups it tests.
struct ClassSharpness {
    /// Each member's energy per channel and octave band (`ClassPower::energies`).
    power: Rc<ClassPower>,
    /// Bands per channel.
    bands: usize,
    /// The member positions of the groups tested, the sharpest first.
    chosen: Vec<Vec<usize>>,
}

impl ClassSharpness {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let bands = band_count(input.size[1], input.size[0]);
        let power = ClassPower::of_class(input)?;
        let mut class = ClassSharpness {
            power,
            bands,
            chosen: Vec::new(),
        };
        let chosen =
            super::fewest_by_key(input, EvidenceTest::SharpnessTransfer, MAX_GROUPS, |g| {
                let rest = g.rest(input.members.len());
                let filter = gains(&class.mean(&g.members), &class.mean(&rest));
                let finest = finest_gain(&filter, class.bands);
                // The sharpest first: the lowest key.
                (finest >= MIN_GAIN).then_some(-finest)
            });
        class.chosen = chosen;
        Ok(class)
    }

    /// The mean band energies of the members at `rows` (zeros where there are none).
    fn mean(&self, rows: &[usize]) -> Vec<f64> {
        self.power.energies.mean(rows.iter().copied())
    }
}

/// Per channel and band, the root of the first mean energy over the second's, within
/// [1 / MAX_GAIN, MAX_GAIN]; 1 where either holds none (nothing to compare).
fn gains(group: &[f64], rest: &[f64]) -> Vec<f64> {
    group
        .iter()
        .zip(rest)
        .map(|(&g, &r)| {
            if g > 0.0 && r > 0.0 {
                (g / r).sqrt().clamp(1.0 / MAX_GAIN, MAX_GAIN)
            } else {
                1.0
            }
        })
        .collect()
}

/// A filter's gain in the finest band, in the channel where it is largest. Why the finest: an
/// unsharp mask raises each octave more than the one below it, the finest most; a group of
/// naturally detailed images holds more in every octave, the coarse ones most.
fn finest_gain(filter: &[f64], bands: usize) -> f64 {
    filter
        .chunks(bands.max(1))
        .filter_map(|channel| channel.last().copied())
        .fold(f64::NEG_INFINITY, f64::max)
}

/// A filter over the octaves of the fine frequencies: occlusion applies its inverse to an
/// image, a transplant applies it to the recipient (the same filter for every donor: it is the
/// group's mean).
#[derive(Debug)]
struct BandFilter(Rc<Vec<f64>>);

impl Carrier for BandFilter {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        filter_bands(image, &self.0, (at.apply.width, -1.0, at.apply.bounds));
    }

    fn give(&self, _: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        filter_bands(
            recipient,
            &self.0,
            (from.apply.width, 1.0, from.apply.bounds),
        );
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(BandFilter(Rc::clone(&self.0)))
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the sharpness that {group}'s images hold on \
         average beyond the rest of the class (how much stronger their detail is in each \
         octave of fine frequencies, applied to each image's own detail: oversharpening, a \
         camera's or an app's processing; nothing of the group's content is given) turns \
         {flip} of them into “{class}” (logit {gain} on average; the same from two halves of \
         the class's other images, or the sharpness inverted: {control}); taking it from the \
         group's own images lowers the logit by {drop} (by {drop_rest} in the rest of the \
         class).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::fake::{class_zero_evidence, rows_of};
    use crate::groups::AnalysedGroups;
    use crate::members::KnownLogits;
    use crate::scorer::fake::LinearModel;
    use crate::spectrum::fake::{checker_classes, CHECKER};
    use crate::VerifySettings;
    use spray_store::FeatureSpace;

    /// The sharpness transfer on 8 × 8 images (one octave above the cut): three class-0 images
    /// carry a strong fine texture (the shortcut: *more* fine energy, as an oversharpened photo
    /// holds), three the class's object and the faint texture every other image has. A class-1
    /// image given the sharp group's filter (2.5 times its own texture) turns; given the filter
    /// between two halves of the rest (1) or the inverted one, it does not; the sharp images
    /// with the filter taken away lose part of their logit. Where the budget holds one group
    /// only and the analysis puts the other first, the sharp group is taken from the reserve,
    /// by this test alone.
    #[test]
    fn a_sharpness_shortcut_turns_recipients_with_their_own_detail_filtered() {
        // Class 0's model counts the checkerboard (its shortcut); class 1 counts channel 2
        // more. Class 0: three sharp images without the object (logit 83.2 against 25.6),
        // three faint ones with it (172.8 against 25.6); class 1: faint, no object (140.8
        // against 153.6; at 2.5 times its texture, 179.2 against 153.6).
        let (model, images, by_class, analysed) = checker_classes((4.0, 4.0), [0.25, 0.1, 0.1]);
        let settings = VerifySettings {
            detail_transfer: false,
            colour_transfer: false,
            spectrum_transfer: false,
            ..VerifySettings::default()
        };
        let rows_under = |settings: &VerifySettings, analysed: &AnalysedGroups| {
            let mut model = LinearModel {
                weights: model.weights.clone(),
                scored: 0,
            };
            class_zero_evidence(
                &mut model,
                (&images, &by_class, analysed),
                (settings, &KnownLogits::new()),
                (2, [CHECKER, CHECKER]),
            )
        };
        let rows = rows_under(&settings, &analysed);
        let sharpness = rows_of(&rows, EvidenceTest::SharpnessTransfer);
        // Only the sharp group holds more fine energy than the rest of its class (2.5 times
        // in root); the faint group holds less, which is the spectrum transfer's to test.
        assert_eq!(sharpness.len(), 1);
        let shortcut = sharpness[0];
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert_eq!(shortcut.region, "sharpness");
        // Given the sharp group's filter, every class-1 image turns; given either control's,
        // none does.
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        // The sharp images with the filter taken away: 83.2 → 44.8, still class 0.
        assert!(
            (shortcut.occlusion_drop - (83.2 - 44.8) / 83.2).abs() < 1e-3,
            "{}",
            shortcut.occlusion_drop
        );
        assert_eq!(shortcut.accuracy_after, 1.0);

        // A budget of one group, the faint one first: the sharp group is in the reserve, and
        // only this test takes it (its region test is not run), with the same figures.
        let mut reserved = AnalysedGroups {
            labels: analysed.labels.clone(),
            ..AnalysedGroups::default()
        };
        reserved.contrasts.insert(
            (0, FeatureSpace::Relevance),
            spray_store::analysis::ClusterContrast {
                cluster: 1,
                share: 0.5,
                separation: 1.0,
                magnitude_shift: 0.0,
            },
        );
        let one = VerifySettings {
            max_groups: 1,
            ..settings.clone()
        };
        let rows = rows_under(&one, &reserved);
        let of_sharp: Vec<EvidenceTest> = rows
            .iter()
            .filter(|r| r.group().name() == "cluster 0")
            .map(|r| r.test)
            .collect();
        assert_eq!(of_sharp, [EvidenceTest::SharpnessTransfer]);
        assert_eq!(rows_of(&rows, EvidenceTest::SharpnessTransfer), sharpness);
        assert!(rows.iter().any(|r| r.group().name() == "cluster 1"));
    }

    #[test]
    fn the_filter_is_the_root_of_the_energy_ratio_within_the_cap() {
        let f = gains(&[4.0, 1.0, 100.0, 0.0, 0.01], &[1.0, 4.0, 1.0, 1.0, 1.0]);
        assert_eq!(f, [2.0, 0.5, MAX_GAIN, 1.0, 0.1f64.max(1.0 / MAX_GAIN)]);
    }

    #[test]
    fn the_finest_band_of_the_sharpest_channel_decides() {
        // Two bands per channel: an unsharp mask's rise (1.1 → 1.6 in green) is tested; a
        // natural texture's fall (2.0 → 1.2) is not.
        let sharpened = [1.0, 1.2, 1.1, 1.6, 1.0, 1.3];
        assert_eq!(finest_gain(&sharpened, 2), 1.6);
        assert!(finest_gain(&sharpened, 2) >= MIN_GAIN);
        let textured = [2.0, 1.2, 1.9, 1.1, 1.8, 1.0];
        assert!(finest_gain(&textured, 2) < MIN_GAIN);
    }
}

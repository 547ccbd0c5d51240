//! [`EvidenceTest::PatternTransfer`]: no region, nothing of any one image — what the group's
//! images hold on average beyond the rest of their class at each fine frequency (the root of
//! their mean power less the rest's, bin by bin and per channel: an *excess spectrum*) is
//! given to other classes' images as a texture of those amplitudes under random phases, and
//! taken from the group's own images by a notch at those bins. Why: a print's halftone
//! screen, scanlines, a screen's moiré, an interlace or a sensor's fixed pattern repeat over
//! the whole image at one spacing, in each image at its own offset. No region holds them;
//! the fine-detail transfer adds them together with the donor's edges, and its control — the
//! rest's detail — turns recipients with the class's own edges (on a held-out ResNet whose
//! "cross" relied on a halftone screen, 20% turned against 50%); a per-octave filter cannot
//! put a pattern where a recipient has none. A mean over the group, so the objects, which lie
//! at other places in other images, leave little; random phases, so that nothing of where
//! things are is given.
//!
//! Two controls, the stronger counts: the same between two alternate halves of the class's
//! other images, either way (what averaging that many images leaves by chance); and a
//! texture of the same energy with the rest's own mean spectrum (a class that any fine
//! texture of that strength turns recipients into).
//!
//! Only groups of at most half their class whose excess is a *peak* are tested: somewhere the
//! group's mean power is [`MIN_PEAK`] times the rest's or more ([`peak`]), at most
//! [`MAX_GROUPS`] a class, the highest first, chosen among every group worth testing
//! (`Probe::beyond_budget`), as the sharpness transfer does. A broad excess — more texture,
//! more noise — is the other tests'; so is a larger group over a rest that lacks fine content
//! (blurred images' complement).

use std::rc::Rc;

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::class_power::{pattern_candidates, ClassPower};
use super::member_statistics::{difference, sum_over};
use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::spectrum::{add_texture, filter_bins, high_bins, power};
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::PatternTransfer,
    // Every suspect space's groups, after the space's own test: the halftone images were a
    // concept layer's cluster.
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.pattern_transfer,
    beyond_budget: true,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "pattern turns",
        captions: [
            "cluster member",
            "its pattern notched out",
            "other class",
            "the group's pattern given",
        ],
        sentence: SENTENCE,
    },
};

/// At most this many groups of a class are tested, the most peaked first. Why a cap: the
/// spaces find the same images more than once.
const MAX_GROUPS: usize = 2;

/// How many times the rest's mean power a group's must reach at some fine frequency to be
/// tested. Why 40: of the 2,040 groups of at most half their class that the analysis found on
/// the five realistic scenarios and six held-out ones, the six that reached it held only
/// artifact images — scanlines 665–698, a halftone screen 141, ruler ticks 79–102 —; no group
/// mostly of natural images passed 21, none of a clean class 19; sensor noise's own group
/// reached 30 (a broad excess, which the fine-detail transfer carries; benches/RESULTS.md).
const MIN_PEAK: f64 = 40.0;

/// The least power a bin of the rest counts as holding, as a share of the rest's mean fine
/// power in its channel: a bin nearly empty in every image (a flat render) is no peak.
const FLOOR: f64 = 1e-3;

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::PatternTransfer, || ClassPatterns::of(input))?;
    let Some(sums) = class.chosen_sum(input.group) else {
        return Ok(None);
    };
    let rest = difference(&class.power.sum, sums);
    let group_mean = scaled(sums, input.group.len());
    let rest_mean = scaled(&rest, input.rest.len());
    let high = high_bins(input.size[1], input.size[0]);
    let plane = input.size[0] * input.size[1];
    let is_high = |i: usize| high[i % plane];
    let excess: Vec<f32> = (0..rest.len())
        .map(|i| amplitude(is_high(i), group_mean[i] - rest_mean[i]))
        .collect();
    let notch: Vec<f32> = (0..rest.len())
        .map(|i| {
            if group_mean[i] > rest_mean[i] && group_mean[i] > 0.0 {
                (rest_mean[i] / group_mean[i]).sqrt() as f32
            } else {
                1.0
            }
        })
        .collect();
    // Two halves of the class's other images, alternately in image order: a split that knows
    // nothing of what the images show; their difference either way.
    let even: Vec<usize> = input.rest.iter().copied().step_by(2).collect();
    let even_sum = power_sum(input, &even)?;
    let odd_sum = difference(&rest, &even_sum);
    let (even_mean, odd_mean) = (
        scaled(&even_sum, even.len()),
        scaled(&odd_sum, input.rest.len() - even.len()),
    );
    let chance: Vec<f32> = (0..rest.len())
        .map(|i| amplitude(is_high(i), (even_mean[i] - odd_mean[i]).abs()))
        .collect();
    // The rest's own spectrum, scaled per channel to the excess's energy.
    let mut natural = vec![0.0f32; rest.len()];
    for c in 0..3 {
        let bins = c * plane..(c + 1) * plane;
        let energy = |v: &dyn Fn(usize) -> f64| -> f64 {
            bins.clone().filter(|&i| is_high(i)).map(v).sum::<f64>()
        };
        let want = energy(&|i| (excess[i] as f64).powi(2));
        let have = energy(&|i| rest_mean[i].max(0.0));
        let k = if have > 0.0 { want / have } else { 0.0 };
        for i in bins.filter(|&i| is_high(i)) {
            natural[i] = (k * rest_mean[i].max(0.0)).sqrt() as f32;
        }
    }
    let notch = Rc::new(notch);
    let texture = |amplitude: Vec<f32>| -> Box<dyn Carrier> {
        Box::new(Pattern {
            amplitude: Rc::new(amplitude),
            notch: Rc::clone(&notch),
        })
    };
    Ok(Some(Plan {
        region: "pattern".to_string(),
        region_cells: input.grid * input.grid,
        group: texture(excess),
        control: texture(chance),
        second_control: Some(texture(natural)),
    }))
}

/// The amplitude of a power difference at a bin: its root where it is a fine bin and
/// positive, else nothing.
fn amplitude(high: bool, power: f64) -> f32 {
    if high && power > 0.0 {
        power.sqrt() as f32
    } else {
        0.0
    }
}

/// What the test computes once per class: the sum of its members' power spectra, and the
/// sums over the groups it tests.
struct ClassPatterns {
    /// Over the class's members, the sum of each one's [`power`], and over each candidate
    /// group (`ClassPower::group_sum`).
    power: Rc<ClassPower>,
    /// The member positions of the groups tested, the most peaked first.
    chosen: Vec<Vec<usize>>,
}

impl ClassPatterns {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let candidates = pattern_candidates(input);
        let power = ClassPower::of_class(input)?;
        let high = high_bins(input.size[1], input.size[0]);
        let peaks: Vec<Option<f64>> = candidates
            .iter()
            .map(|g| {
                let s = power.group_sum(&g.members)?;
                let rest = difference(&power.sum, s);
                Some(peak(
                    (
                        &scaled(s, g.members.len()),
                        &scaled(&rest, input.members.len() - g.members.len()),
                    ),
                    &high,
                ))
            })
            .collect();
        let chosen = super::fewest_by_key(input, EvidenceTest::PatternTransfer, MAX_GROUPS, |g| {
            let k = candidates.iter().position(|c| std::ptr::eq(*c, g))?;
            let peak = peaks[k]?;
            (peak >= MIN_PEAK).then_some(-peak)
        });
        Ok(ClassPatterns { power, chosen })
    }

    /// The power sum of a chosen group with exactly these members.
    fn chosen_sum(&self, group: &[usize]) -> Option<&[f64]> {
        self.chosen
            .iter()
            .find(|m| m.as_slice() == group)
            .and_then(|m| self.power.group_sum(m))
    }
}

/// How far a group's mean power stands above the rest's at its most: the largest ratio over
/// the fine bins of each channel, the rest's power floored at [`FLOOR`] of its channel's mean.
fn peak((group, rest): (&[f64], &[f64]), high: &[bool]) -> f64 {
    let plane = high.len();
    let mut best = 0.0f64;
    for c in 0..3 {
        let bins = c * plane..((c + 1) * plane).min(rest.len());
        let fine = || bins.clone().filter(|&i| high[i % plane]);
        let count = fine().count();
        if count == 0 {
            continue;
        }
        let floor = FLOOR * fine().map(|i| rest[i]).sum::<f64>() / count as f64;
        if floor <= 0.0 {
            continue;
        }
        for i in fine() {
            best = best.max(group[i] / rest[i].max(floor));
        }
    }
    best
}

/// The sum of the power spectra of the members at `rows`.
fn power_sum(input: &ProbeInput<'_>, rows: &[usize]) -> Result<Vec<f64>> {
    sum_over(input, rows, 3 * input.size[0] * input.size[1], |t| {
        power(t, input.size[1])
    })
}

/// A sum over `n` images as their mean (zeros over none).
fn scaled(sum: &[f64], n: usize) -> Vec<f64> {
    sum.iter().map(|s| s / n.max(1) as f64).collect()
}

/// A texture of fine amplitudes: given to a recipient under random phases (recipient j's
/// phases are the same for the group and its controls: each pair of a transplant and its
/// control differs only in the amplitudes), and, for the occlusion, a notch filter that takes
/// the group's excess from an image's own spectrum.
#[derive(Debug)]
struct Pattern {
    amplitude: Rc<Vec<f32>>,
    notch: Rc<Vec<f32>>,
}

impl Carrier for Pattern {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        filter_bins(image, &self.notch, (at.apply.width, at.apply.bounds));
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let seed = from.apply.seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        add_texture(
            recipient,
            &self.amplitude,
            (from.apply.width, seed, from.apply.bounds),
        );
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Pattern {
            amplitude: Rc::clone(&self.amplitude),
            notch: Rc::clone(&self.notch),
        })
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the pattern that {group}'s images hold on \
         average beyond the rest of the class (the power they hold above the rest's at each \
         fine frequency, given as a texture under random phases: a halftone screen, \
         scanlines, moiré, a sensor's pattern; nothing of any one image is given) turns \
         {flip} of them into “{class}” (logit {gain} on average; the same from two halves of \
         the class's other images, or a texture of the same strength with the rest's own \
         spectrum: {control}); notching it out of the group's own images lowers the logit by \
         {drop} (by {drop_rest} in the rest of the class).";

/// A world of fine patterns at no shared place, for the tests of the pattern and texture
/// transfers.
#[cfg(test)]
pub(super) mod fake {
    use crate::scorer::Scorer;
    use crate::Result;

    /// The side of the world's images.
    pub(crate) const S: usize = 8;

    /// A model that sees a checkerboard whatever its sign (a network's filters answer a
    /// pattern at any offset; a linear model would not): class 0's logit is 12 times the
    /// checkerboard's amplitude in channel 0 plus twice the mean of channel 1 (the object);
    /// class 1's is 3 times the mean of channel 2 plus 0.5.
    pub(crate) struct PatternModel {
        pub(crate) scored: usize,
    }

    impl Scorer for PatternModel {
        fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
            self.scored += tensors.len();
            let plane = S * S;
            Ok(tensors
                .iter()
                .map(|t| {
                    let checker: f32 = (0..plane)
                        .map(|i| t[i] * sign((i / S + i % S).is_multiple_of(2)))
                        .sum::<f32>()
                        .abs()
                        / plane as f32;
                    let mean =
                        |c: usize| t[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
                    vec![12.0 * checker + 2.0 * mean(1), 3.0 * mean(2) + 0.5]
                })
                .collect())
        }

        fn images_scored(&self) -> usize {
            self.scored
        }
    }

    fn sign(positive: bool) -> f32 {
        if positive {
            1.0
        } else {
            -1.0
        }
    }

    /// 8 × 8 images: channel 0 is 0.5 plus a fine pattern, channel 1 the object, channel 2 the
    /// ground. Class 0: three images with a checkerboard of amplitude 0.25 at their own offset
    /// (the sign alternates: the shortcut, a pattern at no shared place), three with vertical
    /// stripes of 0.25 and the object; class 1: six with faint horizontal stripes (0.02) and a
    /// ground of 0.6.
    pub(crate) fn world() -> (Vec<Vec<f32>>, PatternModel) {
        let plane = S * S;
        let image = |pattern: &dyn Fn(usize, usize) -> f32, object: f32, ground: f32| {
            let mut t = vec![0.0f32; 3 * plane];
            for y in 0..S {
                for x in 0..S {
                    t[y * S + x] = 0.5 + pattern(y, x);
                    t[plane + y * S + x] = object;
                    t[2 * plane + y * S + x] = ground;
                }
            }
            t
        };
        let mut tensors = Vec::new();
        for k in 0..3usize {
            let s = sign(k.is_multiple_of(2));
            tensors.push(image(
                &|y, x| 0.25 * s * sign((x + y).is_multiple_of(2)),
                0.0,
                0.1,
            ));
        }
        for _ in 0..3 {
            tensors.push(image(&|_, x| 0.25 * sign(x.is_multiple_of(2)), 1.0, 0.1));
        }
        for _ in 0..6 {
            tensors.push(image(&|y, _| 0.02 * sign(y.is_multiple_of(2)), 0.0, 0.6));
        }
        (tensors, PatternModel { scored: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{world, S};
    use super::*;
    use crate::evidence::fake::{class_zero_of, row_of, rows_of};
    use crate::VerifySettings;
    use spray_store::verify::Evidence;

    /// Class 0's evidence in the world above, its first `group` images one cluster (maps even)
    /// and the others another, with the pattern transfer the only test besides the space's own.
    fn evidence_with_group_of(group: usize) -> Vec<Evidence> {
        let (tensors, mut model) = world();
        let settings = VerifySettings {
            pattern_transfer: true,
            ..VerifySettings::own_tests_only()
        };
        class_zero_of(&mut model, tensors, (6, group), &settings, S)
    }

    /// The pattern transfer on the world above: the checkerboard group's excess is a peak (the
    /// rest holds none of it), so it is tested; a class-1 image given it under random phases
    /// holds a checkerboard of amplitude 0.25 of one sign or the other and turns (3.0 against
    /// 2.3); the halves of the rest differ in nothing, and the rest's own spectrum at the same
    /// energy is its stripes, which the model does not see; notching the checkerboard out of
    /// the group's images takes their class away.
    #[test]
    fn a_pattern_at_no_shared_place_turns_recipients_and_its_notch_takes_the_class() {
        let rows = evidence_with_group_of(3);
        let pattern = rows_of(&rows, EvidenceTest::PatternTransfer);
        let shortcut = row_of(&rows, EvidenceTest::PatternTransfer, "cluster 0");
        assert_eq!(shortcut.region, "pattern");
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert_eq!(shortcut.accuracy_after, 0.0);
        // The stripes' group is a peak too (the checkerboard images hold no stripes), and
        // what it gives turns nothing.
        for other in pattern.iter().filter(|r| r.group().name() != "cluster 0") {
            assert_eq!(other.transplant_flip_rate, 0.0, "{other:?}");
        }
    }

    /// A group of more than half its class is not tested, however peaked: the three
    /// checkerboard images with one striped image (4 of 6) hold a checkerboard the rest holds
    /// none of, but they are the larger side; the other side (two striped images) holds its
    /// stripes four times as much as the group (one in four): no peak.
    #[test]
    fn a_group_of_more_than_half_its_class_is_not_tested() {
        let rows = evidence_with_group_of(4);
        assert!(rows.iter().all(|r| r.test != EvidenceTest::PatternTransfer));
    }

    #[test]
    fn a_peak_is_the_largest_ratio_over_the_fine_bins_with_the_rest_floored() {
        // One channel's plane of four bins, the last two fine; the other channels empty.
        let high = [false, false, true, true];
        let mut group = vec![0.0; 12];
        let mut rest = vec![0.0; 12];
        group[..4].copy_from_slice(&[100.0, 1.0, 6.0, 2.0]);
        rest[..4].copy_from_slice(&[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(peak((&group, &rest), &high), 3.0);
        // A fine bin the rest lacks counts against the floor: a thousandth of the rest's mean
        // fine power (0.001 · 1).
        rest[..4].copy_from_slice(&[1.0, 1.0, 2.0, 0.0]);
        assert!((peak((&group, &rest), &high) - 2.0 / 0.001).abs() < 1e-6);
    }
}

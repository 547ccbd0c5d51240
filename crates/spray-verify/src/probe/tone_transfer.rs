//! [`EvidenceTest::ToneTransfer`]: no region, nothing of any one image — the distribution of
//! values the group's images hold together, per channel (their pooled histogram), is given to
//! other classes' images by histogram matching: each recipient's values mapped, in order,
//! onto the group's (a monotone curve per channel: what was the recipient's median becomes
//! the group's median, and so on), and the group's own images are mapped onto the rest's.
//! Why: colours posterised to a few levels, highlights clipped by an exposure, an old GIF's
//! palette change *which values* an image takes, each by its own pixels — no mean statistic
//! (the colour transfer gives the mean and spread only), region, detail or spectrum carries
//! that; mapped onto a distribution with a few spikes, any image takes those few levels.
//!
//! Two controls, the stronger counts: the rest's pooled distribution (a class whose images
//! any stretched or flattened distribution turns: on a held-out ResNet whose "square" relied
//! on posterised colours, the rest's turned 42% of recipients, the posterised images' 86%);
//! and that of the rest's spikiest images, as many as the group (a class that any spiky
//! distribution turns: flat backgrounds hold spikes too).
//!
//! Only groups whose distribution is *spiky* are tested: in some channel its mass above its
//! own smoothed version ([`spikes`]) at least [`MIN_SPIKES`] and twice the rest's, at most
//! [`MAX_GROUPS`] a class, the spikiest first, among every group worth testing
//! (`Probe::beyond_budget`).

use std::rc::Rc;

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::member_statistics::MemberStatistics;
use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::ToneTransfer,
    // Every suspect space's groups, after the space's own test: the posterised images were a
    // concept layer's split side.
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.tone_transfer,
    beyond_budget: true,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "tones turn",
        captions: [
            "cluster member",
            "the rest's tones given",
            "other class",
            "the group's tones given",
        ],
        sentence: SENTENCE,
    },
};

/// At most this many groups of a class are tested, the spikiest first.
const MAX_GROUPS: usize = 2;

/// How spiky a group's pooled distribution must be, in some channel where the rest's is at
/// most half as spiky, to be tested ([`spikes`]: the mass above its smoothed version). Why
/// 0.15: of the 2,998 groups the analysis found on the 16 scenarios (suite and held-out), the
/// three that passed held posterised images (0.27–0.30, the rest 0.03–0.05); the highest of
/// the others where the rest was half as spiky were the padding scenario's padded images
/// (0.146) and a clean class's colour cluster of 12 (0.138); clipped highlights pooled 0.12
/// (benches/RESULTS.md).
const MIN_SPIKES: f64 = 0.15;

/// Bins of a channel's histogram over its range (black to full scale).
const LEVELS: usize = 256;

/// Bins the spikes are counted over: four levels each, so that a spike a JPEG encoding and a
/// resize spread over a few neighbouring levels still counts as one.
const COARSE: usize = 64;

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::ToneTransfer, || ClassTones::of(input))?;
    if !class.chosen.iter().any(|m| m.as_slice() == input.group) {
        return Ok(None);
    }
    let rest = Rc::new(class.histograms.mean(input.rest.iter().copied()));
    // The rest's spikiest images, as many as the group, at most half of the rest.
    let mut spikiest = input.rest.to_vec();
    spikiest.sort_by(|&a, &b| class.spikes[b].total_cmp(&class.spikes[a]));
    spikiest.truncate(input.group.len().min(input.rest.len() / 2).max(1));
    let tones = |to: Vec<f64>| -> Box<dyn Carrier> {
        Box::new(Tones {
            given: Rc::new(to),
            away: Rc::clone(&rest),
        })
    };
    Ok(Some(Plan {
        region: "tones".to_string(),
        region_cells: input.grid * input.grid,
        group: tones(class.histograms.mean(input.group.iter().copied())),
        control: tones(rest.to_vec()),
        second_control: Some(tones(class.histograms.mean(spikiest))),
    }))
}

/// What the test computes once per class: each member's histogram and its spikes, and which
/// of its groups it tests.
struct ClassTones {
    /// Each member's [`tone_histogram`].
    histograms: MemberStatistics,
    /// Each member's own [`spikes`].
    spikes: Vec<f64>,
    /// The member positions of the groups tested, the spikiest first.
    chosen: Vec<Vec<usize>>,
}

impl ClassTones {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let histograms =
            MemberStatistics::of(input, 3 * LEVELS, |t| tone_histogram(t, input.bounds))?;
        let spikes_of = |rows: &[usize]| spikes(&histograms.mean(rows.iter().copied()));
        let chosen = super::fewest_by_key(input, EvidenceTest::ToneTransfer, MAX_GROUPS, |g| {
            let group = spikes_of(&g.members);
            let rest = spikes_of(&g.rest(input.members.len()));
            // The spikiest channel in which the rest is not as spiky.
            let most = (0..3)
                .filter(|&c| group[c] >= MIN_SPIKES && group[c] >= 2.0 * rest[c])
                .map(|c| group[c])
                .max_by(f64::total_cmp)?;
            Some(-most)
        });
        let own = (0..input.members.len())
            .map(|m| {
                spikes(&histograms.mean([m]))
                    .into_iter()
                    .fold(0.0, f64::max)
            })
            .collect();
        Ok(ClassTones {
            histograms,
            spikes: own,
            chosen,
        })
    }
}

/// A CHW tensor's histogram per channel over its range (`bounds`: black to full scale),
/// [`LEVELS`] bins a channel, as shares of the channel's pixels.
fn tone_histogram(tensor: &[f32], bounds: &[(f32, f32); 3]) -> Vec<f64> {
    let plane = tensor.len() / 3;
    let mut out = vec![0.0f64; 3 * LEVELS];
    for (c, channel) in tensor.chunks(plane.max(1)).take(3).enumerate() {
        for &v in channel {
            out[c * LEVELS + level(unit(v, bounds[c]))] += 1.0 / plane as f64;
        }
    }
    out
}

/// A value as a share of its channel's range, within 0–1.
fn unit(v: f32, (lo, hi): (f32, f32)) -> f64 {
    (f64::from(v - lo) / f64::from((hi - lo).max(f32::EPSILON))).clamp(0.0, 1.0)
}

/// The bin of a unit value.
fn level(u: f64) -> usize {
    ((u * LEVELS as f64) as usize).min(LEVELS - 1)
}

/// How spiky a histogram (laid out as [`tone_histogram`]) is, per channel: over [`COARSE`]
/// bins, the mass above the histogram smoothed by a (1, 2, 3, 2, 1) window (edges
/// repeated), as a share of the channel's mass. A smooth distribution holds none; a few
/// levels holding every pixel hold most of it (four: a half).
fn spikes(histogram: &[f64]) -> [f64; 3] {
    const WINDOW: [f64; 5] = [1.0, 2.0, 3.0, 2.0, 1.0];
    let mut out = [0.0f64; 3];
    for (c, channel) in histogram.chunks(LEVELS).take(3).enumerate() {
        let coarse: Vec<f64> = channel
            .chunks(LEVELS / COARSE)
            .map(|c| c.iter().sum())
            .collect();
        let total: f64 = coarse.iter().sum();
        if total <= 0.0 {
            continue;
        }
        let at = |i: isize| coarse[i.clamp(0, COARSE as isize - 1) as usize];
        let above: f64 = (0..COARSE as isize)
            .map(|i| {
                let smooth = (-2..=2)
                    .zip(WINDOW)
                    .map(|(d, w)| w * at(i + d))
                    .sum::<f64>()
                    / 9.0;
                (at(i) - smooth).max(0.0)
            })
            .sum();
        out[c] = above / total;
    }
    out
}

/// `tensor`'s values mapped per channel onto the distribution `to` (laid out as
/// [`tone_histogram`]), in order: each value's place in its own channel's distribution (its
/// cumulative share, linear within its bin, so equal values stay equal) becomes the value at
/// that place in `to` (linear within `to`'s bin). A monotone curve per channel; a channel of
/// `to` holding nothing leaves the channel as it is.
fn match_tones(tensor: &mut [f32], to: &[f64], bounds: &[(f32, f32); 3]) {
    let plane = tensor.len() / 3;
    let own = tone_histogram(tensor, bounds);
    for c in 0..3 {
        let target = &to[c * LEVELS..(c + 1) * LEVELS];
        let total: f64 = target.iter().sum();
        if total <= 0.0 {
            continue;
        }
        let below = cumulative(&own[c * LEVELS..(c + 1) * LEVELS]);
        let target_below: Vec<f64> = cumulative(target).iter().map(|v| v / total).collect();
        let (lo, hi) = bounds[c];
        for v in &mut tensor[c * plane..(c + 1) * plane] {
            let u = unit(*v, bounds[c]);
            let b = level(u);
            let within = (u * LEVELS as f64 - b as f64).clamp(0.0, 1.0);
            let place = below[b] + (below[b + 1] - below[b]) * within;
            // The target's bin holding `place`, then linear within it.
            let k = target_below
                .partition_point(|&t| t <= place)
                .clamp(1, LEVELS)
                - 1;
            let width = target_below[k + 1] - target_below[k];
            let frac = if width > 0.0 {
                ((place - target_below[k]) / width).clamp(0.0, 1.0)
            } else {
                0.5
            };
            let mapped = (k as f64 + frac) / LEVELS as f64;
            *v = (lo as f64 + mapped * f64::from(hi - lo)) as f32;
        }
    }
}

/// A histogram's cumulative shares: entry k the mass below bin k (LEVELS + 1 entries).
fn cumulative(histogram: &[f64]) -> Vec<f64> {
    std::iter::once(0.0)
        .chain(histogram.iter().scan(0.0, |s, v| {
            *s += v;
            Some(*s)
        }))
        .collect()
}

/// A distribution of values per channel: given to a recipient by matching its histogram to
/// `given`; taken from an image by matching it to `away` (the rest's).
#[derive(Debug)]
struct Tones {
    given: Rc<Vec<f64>>,
    away: Rc<Vec<f64>>,
}

impl Carrier for Tones {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        match_tones(image, &self.away, at.apply.bounds);
    }

    fn give(&self, _: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        match_tones(recipient, &self.given, from.apply.bounds);
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Tones {
            given: Rc::clone(&self.given),
            away: Rc::clone(&self.away),
        })
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the tones that {group}'s images hold together \
         (each image's values mapped, channel by channel and in order, onto the group's pooled \
         distribution: colours posterised to a few levels, clipped highlights, a palette; \
         nothing of any one image is given) turns {flip} of them into “{class}” (logit {gain} \
         on average; the rest of the class's distribution, or that of its spikiest images: \
         {control}); mapping the group's own images onto the rest's lowers the logit by {drop} \
         (by {drop_rest} in the rest of the class).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::fake::{class_zero_of, rows_of};
    use crate::scorer::Scorer;
    use crate::VerifySettings;
    use spray_store::verify::Evidence;

    const S: usize = 8;
    const UNIT: [(f32, f32); 3] = [(0.0, 1.0); 3];

    /// The four levels a posterised channel takes.
    const POSTER: [f32; 4] = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];

    /// A model that counts posterised pixels (a network that has learned flat, few-level
    /// tones): class 0's logit is 4 times the share of channel 0's pixels within 0.01 of one
    /// of the four levels plus 3 times how much brighter channel 1 is on the left half than on
    /// the right (the object: an arrangement, which matching tones in order keeps); class 1's
    /// is 2.3.
    struct PosterModel {
        scored: usize,
    }

    impl Scorer for PosterModel {
        fn logits(&mut self, tensors: &[Vec<f32>]) -> crate::Result<Vec<Vec<f32>>> {
            self.scored += tensors.len();
            let plane = S * S;
            Ok(tensors
                .iter()
                .map(|t| {
                    let posterised = t[..plane]
                        .iter()
                        .filter(|&&v| POSTER.iter().any(|l| (v - l).abs() < 0.01))
                        .count() as f32
                        / plane as f32;
                    let side = |left: bool| {
                        (0..plane)
                            .filter(|i| (i % S < S / 2) == left)
                            .map(|i| t[plane + i])
                            .sum::<f32>()
                            / (plane / 2) as f32
                    };
                    vec![4.0 * posterised + 3.0 * (side(true) - side(false)), 2.3]
                })
                .collect())
        }

        fn images_scored(&self) -> usize {
            self.scored
        }
    }

    /// Channel 0 of image k: a smooth ramp over the 64 pixels (from 0.05 to 0.95, shifted a
    /// little per image), posterised or not.
    fn ramp(k: usize, posterised: bool) -> Vec<f32> {
        (0..S * S)
            .map(|i| {
                let v = 0.05 + 0.9 * (i as f32 + 0.37 * k as f32) / (S * S) as f32;
                if posterised {
                    POSTER[((v * 4.0) as usize).min(3)]
                } else {
                    v
                }
            })
            .collect()
    }

    /// Class 0: three posterised ramps (the shortcut: a few tones; channel 1 an even 0.5),
    /// three smooth ones with the object (channel 1 bright on the left, dark on the right);
    /// class 1: six smooth ramps, channel 1 the other way round. Channel 2 is 0.1 everywhere.
    /// Class 0's first `group` images are one cluster.
    fn evidence_with_group_of(group: usize) -> Vec<Evidence> {
        let image = |k: usize, posterised: bool, object: [f32; 2]| {
            let mut t = ramp(k, posterised);
            t.extend((0..S * S).map(|i| object[usize::from(i % S >= S / 2)]));
            t.extend(std::iter::repeat_n(0.1, S * S));
            t
        };
        let mut tensors: Vec<Vec<f32>> = (0..3).map(|k| image(k, true, [0.5, 0.5])).collect();
        tensors.extend((3..6).map(|k| image(k, false, [1.0, 0.0])));
        tensors.extend((6..12).map(|k| image(k, false, [0.0, 1.0])));
        let settings = VerifySettings {
            tone_transfer: true,
            ..VerifySettings::own_tests_only()
        };
        class_zero_of(
            &mut PosterModel { scored: 0 },
            tensors,
            (6, group),
            &settings,
            S,
        )
    }

    /// The posterised group's pooled distribution is four spikes in channel 0, so it is
    /// tested; a class-1 image mapped onto it takes the four levels and turns (4.0 against
    /// 2.3); mapped onto the rest's (smooth ramps; its channel 1 half dark, half bright, which
    /// leaves the recipient's arrangement as it is) or its spikiest images' (the same), it
    /// does not; the posterised images mapped onto the rest's distribution lose their class.
    /// The other side is not tested: its channel 1 (two levels) is less spiky than the
    /// group's (one), its channel 0 smooth.
    #[test]
    fn posterised_tones_turn_recipients_and_the_rest_s_tones_take_the_class() {
        let rows = evidence_with_group_of(3);
        let tones = rows_of(&rows, EvidenceTest::ToneTransfer);
        assert_eq!(
            tones.len(),
            1,
            "only the posterised group is spiky: {tones:?}"
        );
        let row = tones[0];
        assert_eq!(row.group().name(), "cluster 0");
        assert_eq!(row.region, "tones");
        assert_eq!(row.transplant_flip_rate, 1.0);
        assert_eq!(row.transplant_flip_rate_rest, 0.0);
        assert_eq!(row.accuracy_after, 0.0);
    }

    #[test]
    fn matching_onto_four_spikes_posterises_and_onto_its_own_tones_changes_little() {
        let mut t = ramp(0, false);
        t.extend(vec![0.5; 2 * S * S]);
        let original = t.clone();
        // Onto its own distribution: every value within a bin's width.
        let own = tone_histogram(&t, &UNIT);
        let mut same = t.clone();
        match_tones(&mut same, &own, &UNIT);
        assert!(same
            .iter()
            .zip(&original)
            .all(|(a, b)| (a - b).abs() <= 1.0 / LEVELS as f32 + 1e-6));
        // Onto a posterised ramp's: every value of channel 0 within a bin of a level, in
        // order (monotone).
        let mut poster = ramp(1, true);
        poster.extend(vec![0.5; 2 * S * S]);
        match_tones(&mut t, &tone_histogram(&poster, &UNIT), &UNIT);
        for v in &t[..S * S] {
            assert!(
                POSTER.iter().any(|l| (v - l).abs() <= 1.0 / LEVELS as f32),
                "{v}"
            );
        }
        assert!(t[..S * S].windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_smooth_distribution_has_no_spikes_and_four_levels_most() {
        let smooth: Vec<f64> = (0..3 * LEVELS).map(|_| 1.0 / LEVELS as f64).collect();
        assert!(spikes(&smooth).iter().all(|&s| s < 1e-9));
        let mut four = vec![0.0; 3 * LEVELS];
        for c in 0..3 {
            for l in [0, 85, 170, 255] {
                four[c * LEVELS + l] = 0.25;
            }
        }
        // A third of each edge spike and two thirds of each inner one stand above the smooth.
        for s in spikes(&four) {
            assert!((s - 0.5).abs() < 1e-9, "{s}");
        }
    }
}

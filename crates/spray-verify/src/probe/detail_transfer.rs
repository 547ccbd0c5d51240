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

use super::chance::ChanceLevels;
use super::{Carrier, Giving, Method, Occluding, PerDonor, Plan, Probe, ProbeInput, Wording};
use crate::perturb::{add_detail, detail_energy, low_pass};
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
    let class = input
        .cache
        .get_or_try(EvidenceTest::DetailTransfer, || ClassDetail::of(input))?;
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

/// What the test computes once per class, one image at a time (a class of thousands is never
/// held at once): each member's detail energy where the model looks (the second control's
/// choice), and the statistics of its detail that the screen compares.
struct ClassDetail {
    energies: Vec<f64>,
    /// Per member, [`detail_statistics`].
    statistics: Vec<Vec<f64>>,
    /// Per statistic, its standard deviation over the class.
    spread: Vec<f64>,
    chance: ChanceLevels,
}

/// This test's own random subsets (`ChanceLevels`).
const CHANCE_SALT: u64 = 0xDE7A_11ED_5C4E_E000;

impl ClassDetail {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let (g, width) = (input.grid, input.size[1]);
        let mut energies = Vec::with_capacity(input.members.len());
        let mut statistics = Vec::with_capacity(input.members.len());
        for m in input.members {
            let t = input.images.tensor(m.image_index)?;
            let smooth = low_pass(&t, width);
            energies.push(detail_energy((&t, &smooth), width, &m.map, g));
            statistics.push(detail_statistics((&t, &smooth), width, g, input.bounds));
        }
        let spread = spread(&statistics);
        Ok(ClassDetail {
            energies,
            statistics,
            spread,
            chance: ChanceLevels::new(CHANCE_SALT),
        })
    }

    /// Whether the members at `group` have fine detail unlike the rest of the class's beyond
    /// chance: the largest, over the statistics of [`detail_statistics`], of the two-sample
    /// t² of the group's mean against the rest's (in the class's standard deviation) exceeds
    /// what seeded random subsets of the same size reach (`ChanceLevels::stands_apart`: all
    /// but 2 of 199; the maximum is drawn for them too, so testing many statistics at once is
    /// paid for). Why a screen: the control gives recipients the detail of the class's other
    /// images, so where the group's detail is theirs the test measures the same change twice
    /// — on the seventeen scenarios 41% of the test's images went to such groups. Why these
    /// statistics: a pattern over the whole image (noise, scanlines, a screen) changes the
    /// energies, their orientation or their colour; one in a place (a caption, tick marks)
    /// the cells it lies in. Every row of the test that counted at +0.38 or more stood at
    /// least 1.38 times above its chance level (the sensor noise of photos' "heart", the
    /// grid of held-resnet-m's "disc"; photos-vit's caption 1.56) — benches/RESULTS.md.
    fn stands_apart(&self, group: &[usize], seed: u64) -> bool {
        let n = self.statistics.len();
        let in_group: Vec<usize> = group.iter().copied().filter(|&i| i < n).collect();
        let total = column_sums(&self.statistics, 0..n);
        self.chance.stands_apart(n, &in_group, seed, |g| {
            let sum = column_sums(&self.statistics, g.iter().copied());
            let (ng, nr) = (g.len() as f64, (n - g.len()) as f64);
            (0..self.spread.len())
                .filter(|&k| self.spread[k] > 0.0)
                .map(|k| {
                    let delta = sum[k] / ng - (total[k] - sum[k]) / nr;
                    delta * delta / (self.spread[k].powi(2) * (1.0 / ng + 1.0 / nr))
                })
                .fold(0.0, f64::max)
        })
    }
}

/// Per column, the sum of `rows` at `at`.
fn column_sums(rows: &[Vec<f64>], at: impl IntoIterator<Item = usize>) -> Vec<f64> {
    let width = rows.first().map_or(0, Vec::len);
    let mut sum = vec![0.0f64; width];
    for i in at {
        sum.iter_mut().zip(&rows[i]).for_each(|(s, v)| *s += v);
    }
    sum
}

/// Per column, the standard deviation of `rows` (n − 1; 0 for fewer than two rows).
fn spread(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.len();
    if n < 2 {
        return vec![0.0; rows.first().map_or(0, Vec::len)];
    }
    let mean: Vec<f64> = column_sums(rows, 0..n)
        .iter()
        .map(|s| s / n as f64)
        .collect();
    (0..mean.len())
        .map(|k| {
            let ss: f64 = rows.iter().map(|r| (r[k] - mean[k]).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        })
        .collect()
}

/// Where a statistic's mean square is floored before its log (in shares of the channel's
/// range squared; a step of one level is 1.5e-5): only a flat area reaches it.
const DETAIL_FLOOR: f64 = 1e-10;

/// The statistics of a CHW tensor's fine detail (tensor − `smooth`, its low-pass, each
/// channel as a share of its range, `bounds`) that the screen compares, all logs of mean
/// squares: per channel its energy; the luma detail's energy across columns against along
/// them (orientation: scanlines, stripes); the detail's colour against its luma (noise that
/// is coloured, fringes); and per cell of the g × g grid its energy over the channels (a
/// caption, marks in one place).
fn detail_statistics(
    (tensor, smooth): (&[f32], &[f32]),
    width: usize,
    g: usize,
    bounds: &[(f32, f32); 3],
) -> Vec<f64> {
    let plane = tensor.len() / 3;
    let width = width.max(1);
    let height = plane / width;
    // Each value's detail and each pixel's luma once: the loop below reads a pixel's luma
    // three times (its own, and as the neighbour of the pixels left of and above it).
    let detail: Vec<f64> = (0..3 * plane)
        .map(|i| {
            let (lo, hi) = bounds[i / plane];
            f64::from(tensor[i] - smooth[i]) / f64::from((hi - lo).abs()).max(f64::EPSILON)
        })
        .collect();
    let luma: Vec<f64> = (0..plane)
        .map(|p| (detail[p] + detail[plane + p] + detail[2 * plane + p]) / 3.0)
        .collect();
    let log = |sum: f64, count: usize| (sum / count.max(1) as f64 + DETAIL_FLOOR).ln();
    let mut channel = [0.0f64; 3];
    let (mut luma_energy, mut colour) = (0.0f64, 0.0f64);
    let (mut across, mut along) = (0.0f64, 0.0f64);
    let mut cells = vec![0.0f64; g * g];
    let mut counts = vec![0usize; g * g];
    for p in 0..plane {
        let (y, x) = (p / width, p % width);
        let l = luma[p];
        luma_energy += l * l;
        let cell = spray_store::relevance::grid_bin(y, height, g) * g
            + spray_store::relevance::grid_bin(x, width, g);
        for (c, e) in channel.iter_mut().enumerate() {
            let d = detail[c * plane + p];
            *e += d * d;
            colour += (d - l).powi(2);
            cells[cell] += d * d;
        }
        counts[cell] += 3;
        if x + 1 < width {
            across += (luma[p + 1] - l).powi(2);
        }
        if y + 1 < height {
            along += (luma[p + width] - l).powi(2);
        }
    }
    let pairs_across = height * width.saturating_sub(1);
    let pairs_along = width * height.saturating_sub(1);
    let mut out: Vec<f64> = channel.iter().map(|&e| log(e, plane)).collect();
    out.push(log(across, pairs_across) - log(along, pairs_along));
    out.push(log(colour, 3 * plane) - log(luma_energy, plane));
    out.extend(cells.iter().zip(&counts).map(|(&e, &k)| log(e, k)));
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: [(f32, f32); 3] = [(0.0, 1.0); 3];

    /// A 16 × 16 grey tensor with deterministic faint noise (member `seed`), and what
    /// `mark` paints on it.
    fn image(seed: u64, mark: impl Fn(usize, usize) -> Option<f32>) -> Vec<f32> {
        let mut rng = spray_dataset::SplitMix64(seed);
        let mut t = vec![0.0f32; 3 * 256];
        for p in 0..256 {
            let noise = ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
            let v = mark(p / 16, p % 16).unwrap_or(0.5 + noise);
            (0..3).for_each(|c| t[c * 256 + p] = v);
        }
        t
    }

    fn statistics(t: &[f32]) -> Vec<f64> {
        detail_statistics((t, &low_pass(t, 16)), 16, 4, &UNIT)
    }

    /// Stripes down the columns change along a row, not down a column: the orientation
    /// statistic reads far above zero; grey detail has no colour; a mark in the top-left
    /// cell raises that cell's energy alone.
    #[test]
    fn the_statistics_read_orientation_colour_and_place() {
        let stripes = image(1, |_, x| Some(if x % 2 == 0 { 0.3 } else { 0.7 }));
        let s = statistics(&stripes);
        assert_eq!(s.len(), 3 + 2 + 16);
        assert!(s[3] > 5.0, "{s:?}");
        assert!(s[4] < -10.0, "{s:?}");
        let plain = statistics(&image(2, |_, _| None));
        let marked = statistics(&image(2, |y, x| (y < 3 && x < 3).then_some(1.0)));
        assert!(marked[5] > plain[5] + 3.0, "{marked:?} {plain:?}");
        assert!((marked[5 + 15] - plain[5 + 15]).abs() < 1e-9);
    }

    /// Forty members of faint noise; twelve with a mark in one corner stand apart, twelve
    /// spread over the class without one do not.
    #[test]
    fn a_marked_group_stands_apart_and_a_plain_one_does_not() {
        let class = |marked: fn(usize) -> bool| {
            let statistics: Vec<Vec<f64>> = (0..40)
                .map(|i| {
                    let mark = move |y: usize, x: usize| {
                        (marked(i) && y >= 12 && x >= 12 && (x + y).is_multiple_of(2))
                            .then_some(0.9)
                    };
                    statistics(&image(i as u64, mark))
                })
                .collect();
            ClassDetail {
                energies: vec![0.0; 40],
                spread: spread(&statistics),
                statistics,
                chance: ChanceLevels::new(CHANCE_SALT),
            }
        };
        let plain = class(|_| false);
        assert!(!plain.stands_apart(&(0..40).step_by(3).take(12).collect::<Vec<_>>(), 0));
        let marked = class(|i| i < 12);
        assert!(marked.stands_apart(&(0..12).collect::<Vec<_>>(), 0));
    }

    #[test]
    fn column_sums_and_spreads_are_per_statistic() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 2.0], vec![5.0, 2.0]];
        assert_eq!(column_sums(&rows, [0, 2]), vec![6.0, 4.0]);
        assert_eq!(spread(&rows), vec![2.0, 0.0]);
        assert_eq!(spread(&rows[..1]), vec![0.0, 0.0]);
    }
}

//! What the fine-detail and texture transfers compute once per class
//! ([`ClassDetail`]), one image at a time, and the screens both put a group through: whether
//! its fine detail (each image minus its low-pass, `perturb::low_pass`) stands apart from the
//! rest of its class's beyond chance.

use std::rc::Rc;

use spray_store::EvidenceTest;

use super::chance::ChanceLevels;
use super::ProbeInput;
use crate::perturb::{detail_energy, low_pass};
use crate::spectrum::fine_energy;
use crate::Result;

/// A class's fine detail, one value per member (a class of thousands is never held at once):
/// its detail energy where the model looks (the fine-detail transfer's second control), its
/// energy at fine frequencies (the texture transfer's control), and the statistics of its
/// detail that the screens compare.
pub(super) struct ClassDetail {
    pub(super) energies: Vec<f64>,
    /// Per member, its detail's energy at and above the spectrum's cut, summed over the
    /// channels (`spectrum::fine_energy`): the strength of the texture it gives.
    pub(super) fine: Vec<f64>,
    /// Per member, [`DetailReading::statistics`].
    statistics: Vec<Vec<f64>>,
    /// Per statistic, its standard deviation over the class.
    spread: Vec<f64>,
    chance: ChanceLevels,
    /// Per member, [`DetailReading::texture`], their spreads, and the texture screen's own
    /// random subsets.
    texture: Vec<Vec<f64>>,
    texture_spread: Vec<f64>,
    texture_chance: ChanceLevels,
}

/// The fine-detail transfer's own random subsets (`ChanceLevels`).
const CHANCE_SALT: u64 = 0xDE7A_11ED_5C4E_E000;
/// The texture transfer's.
const TEXTURE_SALT: u64 = 0x7E87_0BE5_C4A9_CE00;

impl ClassDetail {
    /// The class's, computed once whichever test asks first (kept under the fine-detail
    /// transfer's name in the class's cache).
    pub(super) fn of_class(input: &ProbeInput<'_>) -> Result<Rc<Self>> {
        input
            .cache
            .get_or_try(EvidenceTest::DetailTransfer, || ClassDetail::of(input))
    }

    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let (g, width) = (input.grid, input.size[1]);
        let mut energies = Vec::with_capacity(input.members.len());
        let mut fine = Vec::with_capacity(input.members.len());
        let mut statistics = Vec::with_capacity(input.members.len());
        let mut texture = Vec::with_capacity(input.members.len());
        for m in input.members {
            let t = input.images.tensor(m.image_index)?;
            let smooth = low_pass(&t, width);
            energies.push(detail_energy((&t, &smooth), width, &m.map, g));
            fine.push(texture_energy(&fine_detail((&t, &smooth)), width));
            let reading = read_detail((&t, &smooth), width, g, input.bounds);
            statistics.push(reading.statistics);
            texture.push(reading.texture);
        }
        Ok(ClassDetail::from_readings(
            energies, fine, statistics, texture,
        ))
    }

    fn from_readings(
        energies: Vec<f64>,
        fine: Vec<f64>,
        statistics: Vec<Vec<f64>>,
        texture: Vec<Vec<f64>>,
    ) -> Self {
        ClassDetail {
            energies,
            fine,
            spread: spread(&statistics),
            statistics,
            chance: ChanceLevels::new(CHANCE_SALT),
            texture_spread: spread(&texture),
            texture,
            texture_chance: ChanceLevels::new(TEXTURE_SALT),
        }
    }

    /// Whether the members at `group` have fine detail unlike the rest of the class's beyond
    /// chance: the largest, over the statistics of [`DetailReading::statistics`], of the two-sample
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
    pub(super) fn stands_apart(&self, group: &[usize], seed: u64) -> bool {
        largest_difference_stands_apart((&self.statistics, &self.spread), &self.chance, group, seed)
    }

    /// Whether the members at `group` hold a texture unlike the rest of the class's beyond
    /// chance: as [`Self::stands_apart`] over the statistics of [`DetailReading::texture`],
    /// which do not change with the detail's strength, with their own random subsets. Why: the
    /// texture transfer's control gives the rest's detail at the group's strength, so a group
    /// whose detail differs from the rest's in strength only (the class's most detailed
    /// images) measures the same texture twice; and a texture carries nothing of where the
    /// detail lies (a caption stands apart in its cells, and is the fine-detail transfer's and
    /// the regions').
    pub(super) fn texture_stands_apart(&self, group: &[usize], seed: u64) -> bool {
        largest_difference_stands_apart(
            (&self.texture, &self.texture_spread),
            &self.texture_chance,
            group,
            seed,
        )
    }
}

/// Whether the largest two-sample t² over the columns of `rows` (one row per member of the
/// class; `spread`, each column's standard deviation) of the members at `group` against the
/// rest exceeds `chance`'s level for its size.
fn largest_difference_stands_apart(
    (rows, spread): (&[Vec<f64>], &[f64]),
    chance: &ChanceLevels,
    group: &[usize],
    seed: u64,
) -> bool {
    let n = rows.len();
    let in_group: Vec<usize> = group.iter().copied().filter(|&i| i < n).collect();
    let total = column_sums(rows, 0..n);
    chance.stands_apart(n, &in_group, seed, |g| {
        let sum = column_sums(rows, g.iter().copied());
        let (ng, nr) = (g.len() as f64, (n - g.len()) as f64);
        (0..spread.len())
            .filter(|&k| spread[k] > 0.0)
            .map(|k| {
                let delta = sum[k] / ng - (total[k] - sum[k]) / nr;
                delta * delta / (spread[k].powi(2) * (1.0 / ng + 1.0 / nr))
            })
            .fold(0.0, f64::max)
    })
}

/// A CHW tensor's fine detail: the tensor less `smooth`, its low-pass.
pub(super) fn fine_detail((tensor, smooth): (&[f32], &[f32])) -> Vec<f32> {
    tensor.iter().zip(smooth).map(|(t, s)| t - s).collect()
}

/// The energy of a CHW tensor's [`fine_detail`] at and above the spectrum's cut, summed over
/// the channels: what a texture made of it holds (`spectrum::add_scrambled` gives those bins
/// only). The one measure of a texture's strength: the members' (`ClassDetail::fine`) and the
/// texture transfer's donors' are compared.
pub(super) fn texture_energy(detail: &[f32], width: usize) -> f64 {
    fine_energy(detail, width).iter().sum()
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

/// Where the texture's colour share is floored before its log: a millionth of the detail's
/// energy in colour is none.
const SHARE_FLOOR: f64 = 1e-6;

/// What the screens read of one image's fine detail.
struct DetailReading {
    /// The fine-detail transfer's screen, all logs of mean squares: per channel the detail's
    /// energy; the luma detail's energy across columns against along them (orientation:
    /// scanlines, stripes); the detail's colour against its luma (noise that is coloured,
    /// fringes); and per cell of the g × g grid its energy over the channels (a caption, marks
    /// in one place).
    statistics: Vec<f64>,
    /// The texture transfer's: what does not change when the detail is scaled — the balance
    /// of the channels' energies (the first's and the third's against the second's), the
    /// orientation, the log of the colour's share of the energy, and the fineness: the luma's energy between neighbouring
    /// pixels against its detail's (noise changes from one pixel to the next, an object's
    /// blurred edge over several).
    texture: Vec<f64>,
}

/// [`DetailReading`] of a CHW tensor's fine detail (tensor − `smooth`, its low-pass), each
/// channel as a share of its range (`bounds`).
fn read_detail(
    (tensor, smooth): (&[f32], &[f32]),
    width: usize,
    g: usize,
    bounds: &[(f32, f32); 3],
) -> DetailReading {
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
    // The colour's share of the detail's energy, floored as a share: a grey image's colour is
    // 0 whatever its strength (the screen's log against the luma's would read its strength).
    let (colour_ms, luma_ms) = (
        colour / (3 * plane).max(1) as f64,
        luma_energy / plane.max(1) as f64,
    );
    let colour_share = colour_ms / (colour_ms + luma_ms).max(f64::MIN_POSITIVE);
    let texture = vec![
        out[0] - out[1],
        out[2] - out[1],
        out[3],
        (colour_share + SHARE_FLOOR).ln(),
        log(across + along, pairs_across + pairs_along) - log(luma_energy, plane),
    ];
    out.extend(cells.iter().zip(&counts).map(|(&e, &k)| log(e, k)));
    DetailReading {
        statistics: out,
        texture,
    }
}

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

    fn reading(t: &[f32]) -> DetailReading {
        read_detail((t, &low_pass(t, 16)), 16, 4, &UNIT)
    }

    fn statistics(t: &[f32]) -> Vec<f64> {
        reading(t).statistics
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
        // The far cell is untouched up to rounding: the low-pass's running sums take the
        // mark's rows in and let them go again, which leaves a few units in the last place
        // (3.5e-6 here, of a log energy of -10.4).
        let far = (marked[5 + 15], plain[5 + 15]);
        assert!((far.0 - far.1).abs() < 1e-4, "{far:?}");
    }

    /// A class of forty members of `image(i)`'s readings.
    fn class_of(image: impl Fn(usize) -> Vec<f32>) -> ClassDetail {
        let (statistics, texture) = (0..40)
            .map(|i| {
                let r = reading(&image(i));
                (r.statistics, r.texture)
            })
            .unzip();
        ClassDetail::from_readings(vec![0.0; 40], vec![0.0; 40], statistics, texture)
    }

    /// Forty members of faint noise; twelve with a mark in one corner stand apart, twelve
    /// spread over the class without one do not, in either screen.
    #[test]
    fn a_marked_group_stands_apart_and_a_plain_one_does_not() {
        let class = |marked: fn(usize) -> bool| {
            class_of(|i| {
                let mark = move |y: usize, x: usize| {
                    (marked(i) && y >= 12 && x >= 12 && (x + y).is_multiple_of(2)).then_some(0.9)
                };
                image(i as u64, mark)
            })
        };
        let plain = class(|_| false);
        let spread_out: Vec<usize> = (0..40).step_by(3).take(12).collect();
        assert!(!plain.stands_apart(&spread_out, 0));
        assert!(!plain.texture_stands_apart(&spread_out, 0));
        let marked = class(|i| i < 12);
        assert!(marked.stands_apart(&(0..12).collect::<Vec<_>>(), 0));
    }

    /// A 16 × 16 tensor of 0.5 plus noise of `amplitude`: one value for the three channels
    /// (grey), or each its own (coloured).
    fn noise(seed: u64, amplitude: f32, coloured: bool) -> Vec<f32> {
        let mut rng = spray_dataset::SplitMix64(seed);
        let mut draw = || ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * amplitude;
        let mut t = vec![0.5f32; 3 * 256];
        for p in 0..256 {
            let grey = draw();
            for c in 0..3 {
                t[c * 256 + p] += if coloured { draw() } else { grey };
            }
        }
        t
    }

    /// Grey noise whose strength differs from member to member by up to four times. Twelve
    /// members with grey noise ten times stronger stand apart in their detail, not in their
    /// texture: the texture transfer's control would give the rest's texture at their
    /// strength, the same texture. Twelve with coloured noise of the class's strength stand
    /// apart in both.
    #[test]
    fn the_texture_screen_reads_what_a_texture_is_not_how_strong() {
        let amplitude = |i: usize| 0.02 * (1.0 + 3.0 * ((i * 7) % 40) as f32 / 39.0);
        let first: Vec<usize> = (0..12).collect();
        let stronger = class_of(|i| {
            let a = if i < 12 {
                10.0 * amplitude(i)
            } else {
                amplitude(i)
            };
            noise(i as u64, a, false)
        });
        assert!(stronger.stands_apart(&first, 0));
        assert!(!stronger.texture_stands_apart(&first, 0));
        let coloured = class_of(|i| noise(i as u64, amplitude(i), i < 12));
        assert!(coloured.stands_apart(&first, 0));
        assert!(coloured.texture_stands_apart(&first, 0));
    }

    #[test]
    fn column_sums_and_spreads_are_per_statistic() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 2.0], vec![5.0, 2.0]];
        assert_eq!(column_sums(&rows, [0, 2]), vec![6.0, 4.0]);
        assert_eq!(spread(&rows), vec![2.0, 0.0]);
        assert_eq!(spread(&rows[..1]), vec![0.0, 0.0]);
    }
}

//! [`EvidenceTest::ShadingTransfer`]: no region, no fine detail, no colour — what the group's
//! images hold on average beyond the rest of their class in brightness, pixel by pixel (the
//! mean of their log luminance less the rest's: a *shading field*), is given to other
//! classes' images as a gain, and taken from the group's own. Why: vignetting, uneven light,
//! a dark band, letterbox bars are spread over the image — no region to paste (on a held-out
//! ResNet whose "disc" relied on vignetted corners, pasting the vignetted images' four corners
//! turned 1% of recipients, their border ring 18%, the vignette itself 38%), nothing in the
//! fine detail or the fine spectrum, and not an image's overall colour.
//!
//! The field is a *mean*, so what varies from image to image — the object, the background —
//! averages out, and what the group's images share stays; logs, because shading scales what
//! is there (a dark corner holds less contrast too); not smoothed, because the mean already
//! is (the held-out vignette's field on a grid of 8 × 8 cells turned 18% of those
//! recipients, the field itself 39%); and luminance only (the mean of the channels' logs,
//! the same gain for each), because shading is colourless and a colour is the colour
//! transfer's to give — and because a group whose objects sit in one place in one colour
//! holds that object on average: the demo's magenta discs on the left, given per channel,
//! painted a disc onto the recipients and flagged the clean "disc" (+0.44); as luminance
//! they turned 1 of 10 (benches/RESULTS.md).
//!
//! Two controls, the stronger counts: the same difference between two halves of the class's
//! other images (what averaging that many images leaves by chance), and the group's field
//! reversed (a class that any change of that size turns recipients into, whichever its
//! sign). Only groups whose shading stands out from chance are tested ([`shading_contrast`]
//! at least [`MIN_CONTRAST`]), at most [`MAX_GROUPS`] a class, the most contrasting first.

use std::rc::Rc;

use spray_store::relevance::{grid_bin, sum_pool};
use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::member_statistics::{add_to, difference, sum_over};
use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::perturb::unit_pixel;
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::ShadingTransfer,
    // Every suspect space's groups, after the space's own test: the vignetted images were
    // gathered by a concept layer and by the relevance maps (their relevance on one corner).
    also_for: |space| space.role != SpaceRole::Baseline,
    on: |settings| settings.shading_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "shading turns",
        captions: [
            "cluster member",
            "its shading removed",
            "other class",
            "the group's shading given",
        ],
        sentence: SENTENCE,
    },
};

/// At most this many groups of a class are tested, the most contrasting first. Why a cap: the
/// spaces find the same images more than once (the vignetted "disc" images were the first
/// group of a concept layer and of the relevance maps).
const MAX_GROUPS: usize = 2;

/// How far a group's shading must stand out from chance to be tested: the mean over the grid's
/// cells of its squared z-score against the rest ([`shading_contrast`]; about 1 for a group
/// drawn at random from its class). Why 5: the held-out vignetted groups reached 9–13; no
/// group of photos-clean, the clean control, passed 4.4 (benches/RESULTS.md).
const MIN_CONTRAST: f64 = 5.0;

/// The darkest pixel value a log is taken of (of full scale): black stays finite, and no
/// gain is steeper than 1 : 50.
const DARKEST: f32 = 0.02;

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::ShadingTransfer, || ClassShading::of(input))?;
    if !class.chosen.iter().any(|m| m.as_slice() == input.group) {
        return Ok(None);
    }
    let group_sum = log_sum(input, input.group)?;
    let rest_sum = difference(&class.sum, &group_sum);
    let group = mean_difference(
        (&group_sum, input.group.len()),
        (&rest_sum, input.rest.len()),
    );
    // Two halves of the class's other images, alternately in image order: a split that knows
    // nothing of what the images show.
    let even: Vec<usize> = input.rest.iter().copied().step_by(2).collect();
    let even_sum = log_sum(input, &even)?;
    let odd_sum = difference(&rest_sum, &even_sum);
    let odd = input.rest.len() - even.len();
    let chance = mean_difference((&even_sum, even.len()), (&odd_sum, odd));
    let reversed: Vec<f32> = group.iter().map(|v| -v).collect();
    Ok(Some(Plan {
        region: "shading".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(Shading(Rc::new(group))),
        control: Box::new(Shading(Rc::new(chance))),
        second_control: Some(Box::new(Shading(Rc::new(reversed)))),
    }))
}

/// What the test computes once per class: the sum of its members' log luminance, and which of
/// its groups it tests.
struct ClassShading {
    /// Over the class's members, the sum of each one's [`log_luminance`].
    sum: Vec<f64>,
    /// The member positions of the groups tested, the most contrasting first.
    chosen: Vec<Vec<usize>>,
}

impl ClassShading {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        // One image at a time (a class of thousands is never held at once).
        let mut sum = vec![0.0f64; input.size[0] * input.size[1]];
        let mut cells = Vec::with_capacity(input.members.len());
        for m in input.members {
            let log = log_luminance(&input.images.tensor(m.image_index)?, input.bounds);
            add_to(&mut sum, &log);
            cells.push(cell_shading(&log, input.size, input.grid));
        }
        // The highest contrast first. No two of a class's tested groups hold the same images
        // (`groups::class_groups`).
        let chosen = super::fewest_by_key(input, EvidenceTest::ShadingTransfer, MAX_GROUPS, |g| {
            let rest = g.rest(input.members.len());
            let contrast = shading_contrast(&cells, &g.members, &rest)?;
            (contrast >= MIN_CONTRAST).then_some(-contrast)
        });
        Ok(ClassShading { sum, chosen })
    }
}

/// A CHW tensor's log luminance, one plane: per pixel the mean over the channels of the log
/// of their values (0 black, 1 white through `bounds`, floored at [`DARKEST`]).
fn log_luminance(tensor: &[f32], bounds: &[(f32, f32); 3]) -> Vec<f32> {
    let plane = tensor.len() / 3;
    (0..plane)
        .map(|p| {
            unit_pixel(tensor, plane, p, bounds)
                .iter()
                .map(|v| v.max(DARKEST).ln())
                .sum::<f32>()
                / 3.0
        })
        .collect()
}

/// The summed log luminance of the members at `rows` (zeros where there are none).
fn log_sum(input: &ProbeInput<'_>, rows: &[usize]) -> Result<Vec<f64>> {
    sum_over(input, rows, input.size[0] * input.size[1], |t| {
        log_luminance(t, input.bounds)
    })
}

/// Per pixel, the mean of the first sum (over `n` images) less the second's; zero everywhere
/// where either side holds no image.
fn mean_difference((a, na): (&[f64], usize), (b, nb): (&[f64], usize)) -> Vec<f32> {
    if na == 0 || nb == 0 {
        return vec![0.0; a.len()];
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x / na as f64 - y / nb as f64) as f32)
        .collect()
}

/// A log-luminance plane's shading: its mean per cell of the g × g grid the relevance maps are
/// pooled to (`spray_store::relevance::sum_pool`) over its `[height, width]`, less the mean
/// over the cells (an empty cell, where g exceeds a side, counts 0). Why less the mean: for
/// choosing groups, what counts is where an image is darker or brighter, not how bright it is
/// overall (the colour transfer's to give; the colour space's groups differ in it most).
fn cell_shading(log: &[f32], [h, w]: [usize; 2], g: usize) -> Vec<f64> {
    if log.len() < h * w {
        return vec![0.0; g * g];
    }
    let sums = sum_pool(log, h, w, g, g);
    // Pixels per bin along a side.
    let per_bin = |n: usize| {
        let mut count = vec![0usize; g];
        (0..n).for_each(|p| count[grid_bin(p, n, g)] += 1);
        count
    };
    let (rows, columns) = (per_bin(h), per_bin(w));
    let mut cells: Vec<f64> = sums
        .iter()
        .enumerate()
        .map(|(k, &s)| match rows[k / g] * columns[k % g] {
            0 => 0.0,
            n => f64::from(s) / n as f64,
        })
        .collect();
    let mean = cells.iter().sum::<f64>() / cells.len().max(1) as f64;
    cells.iter_mut().for_each(|v| *v -= mean);
    cells
}

/// How far the group's shading stands from the rest's, against chance: the mean over the
/// cells of z² (Welch's z of the two means). About 1 for a group drawn at random from its
/// class; `None` where either side has fewer than two images.
fn shading_contrast(cells: &[Vec<f64>], group: &[usize], rest: &[usize]) -> Option<f64> {
    if group.len() < 2 || rest.len() < 2 {
        return None;
    }
    let len = cells.first().map_or(0, Vec::len);
    // Per cell, the mean and the squared standard error of the mean.
    let moments = |at: &[usize], k: usize| -> (f64, f64) {
        let values: Vec<f64> = at
            .iter()
            .filter_map(|&i| cells.get(i).and_then(|r| r.get(k)).copied())
            .collect();
        let n = values.len().max(2) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / n)
    };
    let z2: f64 = (0..len)
        .map(|k| {
            let ((mg, sg), (mr, sr)) = (moments(group, k), moments(rest, k));
            if sg + sr > 1e-12 {
                (mg - mr).powi(2) / (sg + sr)
            } else {
                0.0
            }
        })
        .sum();
    Some(z2 / len.max(1) as f64)
}

/// Scale a CHW image's pixel values (0 black through `bounds`) by the gain
/// `exp(sign · field)`, the same in every channel (`field` is one plane), clamped to them.
fn apply_gain(image: &mut [f32], field: &[f32], sign: f32, bounds: &[(f32, f32); 3]) {
    let plane = field.len();
    if plane == 0 || image.len() < 3 * plane {
        return;
    }
    for (c, &(lo, hi)) in bounds.iter().enumerate() {
        for (v, f) in image[c * plane..(c + 1) * plane].iter_mut().zip(field) {
            *v = (lo + (*v - lo) * (sign * f).exp()).clamp(lo, hi);
        }
    }
}

/// A shading field (log gain per pixel): occlusion divides an image by its gain, a
/// transplant multiplies the recipient by it (the same field for every donor: it is the
/// group's mean).
#[derive(Debug)]
struct Shading(Rc<Vec<f32>>);

impl Carrier for Shading {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        apply_gain(image, &self.0, -1.0, at.apply.bounds);
    }

    fn give(&self, _: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        apply_gain(recipient, &self.0, 1.0, from.apply.bounds);
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Shading(Rc::clone(&self.0)))
    }
}

const SENTENCE: &str =
    "Giving {images} images of other classes the shading that {group}'s images hold on \
         average beyond the rest of the class (their mean brightness, pixel by pixel, as a \
         gain: vignetting, uneven light, a dark band; no colour) turns {flip} of them into \
         “{class}” (logit {gain} on average; the same from two halves of the class's other \
         images, or the shading reversed: {control}); taking it from the group's own images \
         lowers the logit by {drop} (by {drop_rest} in the rest of the class).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::fake::{class_zero_evidence, row_of, rows_of};
    use crate::images::fake::Images;
    use crate::members::{two_classes_of, KnownLogits};
    use crate::scorer::fake::LinearModel;
    use crate::scorer::Scorer;
    use crate::VerifySettings;

    const UNIT: [(f32, f32); 3] = [(0.0, 1.0); 3];

    /// A CHW image of side `s`, the value of pixel (y, x) in every channel `f(y, x)`.
    fn image(s: usize, f: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let plane: Vec<f32> = (0..s * s).map(|k| f(k / s, k % s)).collect();
        [plane.clone(), plane.clone(), plane].concat()
    }

    #[test]
    fn luminance_is_the_channels_mean_log_through_the_bounds() {
        // One pixel: red 1, green 0.5, blue 0.25 of full scale in a normalised tensor whose
        // bounds are (-2, 2): the values -2 + 4 v.
        let t = [2.0, 0.0, -1.0];
        let log = log_luminance(&t, &[(-2.0, 2.0); 3]);
        let want = (0.0 + 0.5f32.ln() + 0.25f32.ln()) / 3.0;
        assert!((log[0] - want).abs() < 1e-6, "{log:?}");
        // Black is floored.
        let black = log_luminance(&[-2.0, -2.0, -2.0], &[(-2.0, 2.0); 3]);
        assert!((black[0] - DARKEST.ln()).abs() < 1e-6);
    }

    #[test]
    fn an_images_shading_is_its_log_luminance_per_cell_less_its_mean() {
        // 4 × 4, grid 2: the left half at 0.5, the right at 1; in logs ln 0.5 and 0, less
        // their mean.
        let t = image(4, |_, x| if x < 2 { 0.5 } else { 1.0 });
        let cells = cell_shading(&log_luminance(&t, &UNIT), [4, 4], 2);
        let half = 0.5f64.ln() / 2.0;
        for (v, want) in cells.iter().zip([half, -half, half, -half]) {
            assert!((v - want).abs() < 1e-6, "{cells:?}");
        }
    }

    /// Thirty images of texture that differs per image; the first ten darkened towards the
    /// corners when `vignetted`.
    fn textured(vignetted: bool) -> Vec<Vec<f32>> {
        (0..30)
            .map(|i| {
                image(16, |y, x| {
                    // A hash of (image, pixel): texture that no two images share.
                    let mut z = ((i * 256 + y * 16 + x) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    let texture = ((z >> 40) % 1000) as f32 / 1000.0;
                    let r = (y as f32 - 7.5).hypot(x as f32 - 7.5) / 8.0;
                    let gain = if vignetted && i < 10 {
                        (1.3 - 0.6 * r).min(1.0)
                    } else {
                        1.0
                    };
                    (0.2 + 0.6 * texture) * gain
                })
            })
            .collect()
    }

    #[test]
    fn contrast_is_about_one_by_chance_and_large_for_a_shared_shading() {
        let group: Vec<usize> = (0..10).collect();
        let rest: Vec<usize> = (10..30).collect();
        let cells = |images: Vec<Vec<f32>>| -> Vec<Vec<f64>> {
            images
                .iter()
                .map(|t| cell_shading(&log_luminance(t, &UNIT), [16, 16], 4))
                .collect()
        };
        let chance = shading_contrast(&cells(textured(false)), &group, &rest).unwrap();
        assert!(chance < MIN_CONTRAST, "{chance}");
        let shaded = shading_contrast(&cells(textured(true)), &group, &rest).unwrap();
        assert!(shaded > 4.0 * MIN_CONTRAST, "{shaded}");
        assert_eq!(
            shading_contrast(&cells(textured(true)), &group[..1], &rest),
            None
        );
    }

    #[test]
    fn the_field_is_the_groups_mean_log_gain_and_gives_it_back() {
        // The group's mean log luminance less the rest's: the vignette's log gain, as each
        // vignetted image's texture is the rest's in distribution. Given to a flat grey image
        // it darkens the corners by that gain and leaves the middle.
        let images = textured(true);
        let (mut group, mut rest) = (vec![0.0; 256], vec![0.0; 256]);
        for (i, t) in images.iter().enumerate() {
            let log = log_luminance(t, &UNIT);
            add_to(if i < 10 { &mut group } else { &mut rest }, &log);
        }
        let field = mean_difference((&group, 10), (&rest, 20));
        let (corner, middle) = (field[0], field[8 * 16 + 8]);
        assert!(corner < -0.3, "{corner}");
        assert!(middle.abs() < 0.15, "{middle}");
        let mut grey = vec![0.5f32; 3 * 256];
        apply_gain(&mut grey, &field, 1.0, &UNIT);
        for c in 0..3 {
            assert!((grey[c * 256] - 0.5 * corner.exp()).abs() < 1e-5);
        }
        // Taken away again, the image is what it was (nothing was clamped).
        apply_gain(&mut grey, &field, -1.0, &UNIT);
        assert!(grey.iter().all(|&v| (v - 0.5).abs() < 1e-5));
        // Clamped to the bounds: a gain above 1 cannot make white whiter.
        let mut white = vec![1.0f32; 3];
        apply_gain(&mut white, &[1.0], 1.0, &UNIT);
        assert_eq!(white, [1.0; 3]);
        // No images on a side: no field.
        assert!(mean_difference((&group, 0), (&rest, 20))
            .iter()
            .all(|&v| v == 0.0));
    }

    /// A linear model on 8 × 8 images whose class 0 counts its object (channel 1 in the
    /// middle) and holds a bright border *against* the class, so that darkened borders — a
    /// vignette — push images into it; class 1 counts a little of channel 2 in the middle.
    /// Class 0: images 0–3 vignetted (border × 0.3, cluster 0), images 4–11 not (cluster 1);
    /// class 1: images 12–17. Every image's border is its own texture.
    #[test]
    fn a_vignette_the_model_uses_turns_recipients_and_neither_control_does() {
        const S: usize = 8;
        let plane = S * S;
        let border = |y: usize, x: usize| y == 0 || x == 0 || y == S - 1 || x == S - 1;
        let middle = |y: usize, x: usize| (2..6).contains(&y) && (2..6).contains(&x);
        let mut class0 = vec![0.0f32; 3 * plane];
        let mut class1 = vec![0.0f32; 3 * plane];
        for y in 0..S {
            for x in 0..S {
                for c in 0..3 {
                    if border(y, x) {
                        class0[c * plane + y * S + x] = -1.0;
                    }
                }
                if middle(y, x) {
                    class0[plane + y * S + x] = 5.0;
                    class1[2 * plane + y * S + x] = 0.5;
                }
            }
        }
        let mut model = LinearModel {
            weights: vec![class0, class1],
            scored: 0,
        };
        let make = |i: usize, object: (f32, f32), gain: f32| {
            let mut t = vec![0.5f32; 3 * plane];
            for y in 0..S {
                for x in 0..S {
                    let mut z = ((i * 64 + y * 8 + x) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    let texture = 0.3 + 0.4 * ((z >> 40) % 1000) as f32 / 1000.0;
                    for c in 0..3 {
                        let k = c * plane + y * S + x;
                        if border(y, x) {
                            t[k] = texture * gain;
                        } else if middle(y, x) && c > 0 {
                            t[k] = if c == 1 { object.0 } else { object.1 };
                        }
                    }
                }
            }
            t
        };
        let mut tensors = Vec::new();
        for i in 0..12 {
            tensors.push(make(i, (0.9, 0.3), if i < 4 { 0.3 } else { 1.0 }));
        }
        for i in 12..18 {
            tensors.push(make(i, (0.3, 0.9), 1.0));
        }
        let logits = model.logits(&tensors).unwrap();
        let g = 4;
        let (by_class, analysed) = two_classes_of(&logits, (12, 4), |i| {
            let mut map = vec![0.0f32; g * g];
            map[if i < 4 { 0 } else { 5 }] = 1.0;
            map
        });
        let settings = VerifySettings {
            detail_transfer: false,
            colour_transfer: false,
            spectrum_transfer: false,
            shading_transfer: true,
            min_cluster: 3,
            ..VerifySettings::default()
        };
        let images = Images(tensors);
        let rows = class_zero_evidence(
            &mut model,
            (&images, &by_class, &analysed),
            (&settings, &KnownLogits::new()),
            (g, [S, S]),
        );
        let shading = rows_of(&rows, EvidenceTest::ShadingTransfer);
        let vignetted = row_of(&rows, EvidenceTest::ShadingTransfer, "cluster 0");
        assert_eq!(vignetted.region, "shading");
        // Every class-1 image given the vignette turns; given the halves' difference (their
        // textures' noise) or the vignette reversed (a brighter border), none does.
        assert_eq!(vignetted.transplant_flip_rate, 1.0);
        assert_eq!(vignetted.transplant_flip_rate_rest, 0.0);
        // Its own images, their border brightened back, lose logit.
        assert!(
            vignetted.occlusion_drop > 0.0,
            "{}",
            vignetted.occlusion_drop
        );
        // The rest of the class, a brighter border than the group's, turns none.
        for r in shading.iter().filter(|r| r.group().name() != "cluster 0") {
            assert_eq!(r.transplant_flip_rate, 0.0, "{}", r.group().name());
        }
    }
}

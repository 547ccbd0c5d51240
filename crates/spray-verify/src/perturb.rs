//! What the stage does to images: fill a region (mean colour, seeded noise, blur), paste a
//! region from another image, and give an image another's colour statistics. Tensors are CHW
//! with three channels; masks are one plane.

use crate::settings::Fill;
use crate::spectrum::transpose;

/// Fill the masked pixels of a CHW tensor.
/// Fill the masked pixels of a CHW tensor (`width` pixels per row) with `fill`.
pub(crate) fn occlude(tensor: &mut [f32], mask: &[bool], width: usize, fill: Fill, seed: u64) {
    let plane = mask.len();
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    for c in 0..3 {
        let channel = &mut tensor[c * plane..(c + 1) * plane];
        let blurred = (fill == Fill::Blur).then(|| blur(channel, width));
        let mean = channel.iter().sum::<f32>() / plane as f32;
        let (lo, hi) = channel
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        for (i, (v, &m)) in channel.iter_mut().zip(mask).enumerate() {
            if m {
                *v = match (fill, &blurred) {
                    (Fill::Blur, Some(b)) => b[i],
                    (Fill::Noise, _) => lo + (hi - lo) * next(),
                    _ => mean,
                };
            }
        }
    }
}

/// A plane (`width` pixels per row) blurred by three passes of a separable box filter of
/// radius [`blur_radius`] with clamped edges (≈ a Gaussian of σ ≈ 1.4 · radius).
fn blur(plane: &[f32], width: usize) -> Vec<f32> {
    let width = width.max(1);
    let height = plane.len() / width;
    box_blur(plane, width, blur_radius(width, height))
}

/// The radius of the blur fill's filter, and of an image's coarse layer: max(1, shorter side
/// / 16).
fn blur_radius(width: usize, height: usize) -> usize {
    (width.min(height) / 16).max(1)
}

/// The radius of the low-pass whose remainder is an image's fine detail: max(1, shorter side
/// / 32), σ ≈ 2.8 px at 64 px, 1.4 px at 32 px. Why this small: the detail must hold a
/// pattern of a pixel or two (scanlines, sensor noise, a caption's strokes) and as little as
/// possible of the object's shape, which a coarser low-pass would leave in it. Why not
/// smaller: by the time the model sees it, a pixel-level pattern has been through JPEG and
/// the pipeline's resize, which spread it; with side / 64 (radius 1 at 64 px) the photos
/// scenario's sensor-noise group carried about half the noise's effect (38% of recipients
/// turned, where stamping the noise turns 70%) and went unflagged (+0.25); with radius 2 it
/// is flagged (+0.53), with 3 too (+0.57). At 32 px radius 2 is too coarse: a clean class of
/// the tags scenario (bright squares: its own edges) reached the flag. Proportional to the
/// side, as before; inputs of 224 px (radius 7) are not measured (benches/RESULTS.md).
fn detail_radius(width: usize, height: usize) -> usize {
    (width.min(height) / 32).max(1)
}

/// A CHW tensor (`width` pixels per row) with its fine detail removed: each channel
/// low-passed (`box_blur` of [`detail_radius`]).
pub(crate) fn low_pass(tensor: &[f32], width: usize) -> Vec<f32> {
    let plane = tensor.len() / 3;
    let width = width.max(1);
    let radius = detail_radius(width, plane / width);
    tensor
        .chunks(plane.max(1))
        .flat_map(|channel| box_blur(channel, width, radius))
        .collect()
}

/// A CHW tensor's coarse layer: each channel blurred by the blur fill's filter (three passes
/// of a box of radius max(1, shorter side / 16), σ ≈ 4.5 px at 64 px) over the plane with its
/// edges extended (each edge pixel repeated outwards by three radii): how light and colour
/// fall over the image, without its edges and textures. Why extended: [`box_blur`]'s windows
/// are cut at the border, which pulls a glow at an image's edge towards the inside's level —
/// on held-resnet-p a light leak's coarse layers given that way turned 15% of recipients,
/// with the edges extended 40% (what stamping it does: 65%).
pub(crate) fn coarse_layer(tensor: &[f32], width: usize) -> Vec<f32> {
    let plane = tensor.len() / 3;
    let width = width.max(1);
    let height = plane / width;
    if height == 0 || plane != width * height {
        return tensor.to_vec();
    }
    let radius = blur_radius(width, height);
    let pad = 3 * radius;
    let wide = width + 2 * pad;
    let mut out = Vec::with_capacity(tensor.len());
    let mut extended = Vec::with_capacity(wide * (height + 2 * pad));
    for channel in tensor.chunks(plane) {
        // Row r of the extended plane is the channel's row clamped into range, each of its
        // pixels the row's pixel clamped into range.
        extended.clear();
        for y in 0..height + 2 * pad {
            let row = &channel[y.saturating_sub(pad).min(height - 1) * width..][..width];
            extended.extend(std::iter::repeat_n(row[0], pad));
            extended.extend_from_slice(row);
            extended.extend(std::iter::repeat_n(row[width - 1], pad));
        }
        let blurred = box_blur(&extended, wide, radius);
        for y in 0..height {
            let start = (y + pad) * wide + pad;
            out.extend_from_slice(&blurred[start..start + width]);
        }
    }
    out
}

/// Add `donor`'s fine detail (donor − `smooth`, its [`low_pass`], both CHW), moved by
/// `shift` (rows, columns; what moves off the image is lost), to `target`, clamped to the
/// values a pixel can take per channel (`bounds`).
pub(crate) fn add_detail(
    target: &mut [f32],
    (donor, smooth): (&[f32], &[f32]),
    [dy, dx]: [isize; 2],
    (width, bounds): (usize, &[(f32, f32); 3]),
) {
    let plane = target.len() / 3;
    let width = width.max(1);
    let height = plane / width;
    for (c, &(lo, hi)) in bounds.iter().enumerate() {
        for y in 0..height {
            let sy = y as isize - dy;
            for x in 0..width {
                let sx = x as isize - dx;
                let i = c * plane + y * width + x;
                let inside =
                    (0..height as isize).contains(&sy) && (0..width as isize).contains(&sx);
                let detail = if inside {
                    let j = c * plane + sy as usize * width + sx as usize;
                    donor[j] - smooth[j]
                } else {
                    0.0
                };
                target[i] = (target[i] + detail).clamp(lo, hi);
            }
        }
    }
}

/// How much fine detail a CHW tensor has where its relevance is: per grid cell of `map` (g×g,
/// row-major) the mean square of the detail (tensor − its low-pass) over the cell's pixels
/// and channels, weighted by the cell's share of the map's positive relevance (uniform when it
/// has none). Why weighted: an image's detail is mostly its background's texture or noise;
/// what the model reads is the detail where it looks (the object's edges, an artifact).
/// `smooth` is the tensor's [`low_pass`] (computed once for several statistics of its detail).
pub(crate) fn detail_energy(
    (tensor, smooth): (&[f32], &[f32]),
    width: usize,
    map: &[f32],
    g: usize,
) -> f64 {
    let plane = tensor.len() / 3;
    let width = width.max(1);
    let height = plane / width;
    let cells = g * g;
    let mut energy = vec![0.0f64; cells];
    let mut count = vec![0usize; cells];
    for p in 0..plane {
        let y = spray_store::relevance::grid_bin(p / width, height, g);
        let x = spray_store::relevance::grid_bin(p % width, width, g);
        let cell = y * g + x;
        for c in 0..3 {
            let i = c * plane + p;
            energy[cell] += ((tensor[i] - smooth[i]) as f64).powi(2);
        }
        count[cell] += 3;
    }
    let positive: f64 = map.iter().map(|&v| v.max(0.0) as f64).sum();
    (0..cells)
        .map(|cell| {
            let weight = if positive > 0.0 {
                map.get(cell).map_or(0.0, |&v| v.max(0.0) as f64) / positive
            } else {
                1.0 / cells as f64
            };
            weight * energy[cell] / count[cell].max(1) as f64
        })
        .sum()
}

/// Three passes of a separable box filter of `radius` with clamped edges: each output is its
/// window's mean. Why running sums: a window summed afresh at every pixel costs 2·radius + 1
/// additions, and the coarse layer's radius is side / 16 — at 128 px the blurs were a tenth
/// of the verify stage's samples, two thirds of it the coarse screen's. A running sum costs
/// an addition and a subtraction per pixel whatever the radius. Both directions run down
/// columns, whole rows at a time (the compiler vectorises that); the row passes on the
/// transposed plane. The sums' rounding differs from summing each window afresh by a few
/// units in the last place (the test against the filter as first written bounds it).
fn box_blur(plane: &[f32], width: usize, radius: usize) -> Vec<f32> {
    let width = width.max(1);
    let height = plane.len() / width;
    let n = height * width;
    let mut a = plane[..n].to_vec();
    let mut b = vec![0.0; n];
    let mut sums = Vec::with_capacity(width.max(height));
    if n > 0 {
        for _ in 0..3 {
            blur_columns(&a, &mut b, width, radius, &mut sums);
            std::mem::swap(&mut a, &mut b);
        }
        transpose(&a, &mut b, width, height);
        for _ in 0..3 {
            blur_columns(&b, &mut a, height, radius, &mut sums);
            std::mem::swap(&mut a, &mut b);
        }
        transpose(&b, &mut a, height, width);
    }
    // Values past the last full row (none for an image plane) come out as 0.
    a.resize(plane.len(), 0.0);
    a
}

/// One pass down the columns of `src` into `dst` (`width` per row): per column, the window's
/// running sum (`sums`, one per column) times one over the window's size, the window moved
/// down a row by adding the row it takes in and subtracting the row it lets go.
fn blur_columns(src: &[f32], dst: &mut [f32], width: usize, radius: usize, sums: &mut Vec<f32>) {
    let height = src.len() / width;
    let row = |j: usize| &src[j * width..(j + 1) * width];
    sums.clear();
    sums.resize(width, 0.0);
    for j in 0..=radius.min(height.saturating_sub(1)) {
        sums.iter_mut().zip(row(j)).for_each(|(s, &v)| *s += v);
    }
    for (i, d) in dst.chunks_exact_mut(width).enumerate() {
        let lo = i.saturating_sub(radius);
        let hi = (i + radius).min(height - 1);
        let scale = 1.0 / (hi - lo + 1) as f32;
        d.iter_mut()
            .zip(sums.iter())
            .for_each(|(o, &s)| *o = s * scale);
        let (enters, leaves) = (i + radius + 1 < height, i >= radius);
        match (enters, leaves) {
            (true, true) => {
                let (enter, leave) = (row(i + radius + 1), row(i - radius));
                sums.iter_mut()
                    .zip(enter.iter().zip(leave))
                    .for_each(|(s, (&e, &l))| *s += e - l);
            }
            (true, false) => {
                let enter = row(i + radius + 1);
                sums.iter_mut().zip(enter).for_each(|(s, &e)| *s += e);
            }
            (false, true) => {
                let leave = row(i - radius);
                sums.iter_mut().zip(leave).for_each(|(s, &l)| *s -= l);
            }
            (false, false) => {}
        }
    }
}

/// Copy the masked pixels of `donor` into `target` (both CHW).
pub(crate) fn paste(target: &mut [f32], donor: &[f32], mask: &[bool]) {
    let plane = mask.len();
    for c in 0..3 {
        for (p, &m) in mask.iter().enumerate() {
            if m {
                target[c * plane + p] = donor[c * plane + p];
            }
        }
    }
}

/// Per-channel (mean, standard deviation) of a CHW tensor.
pub(crate) fn channel_stats(tensor: &[f32]) -> [(f32, f32); 3] {
    let plane = (tensor.len() / 3).max(1);
    std::array::from_fn(|c| {
        let channel = &tensor[c * plane..((c + 1) * plane).min(tensor.len())];
        let n = channel.len().max(1) as f64;
        let mean = channel.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = channel
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean as f32, var.sqrt() as f32)
    })
}

/// An image's colours, as the colour transfer gives them: its tensor's per-channel (mean,
/// standard deviation), and its mean chroma in pixel terms (`mean_chroma`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourProfile {
    pub channels: [(f32, f32); 3],
    pub chroma: f32,
}

impl ColourProfile {
    /// The profile of a CHW tensor whose channels take the values `bounds` (0 to full scale
    /// through the preprocessing).
    pub(crate) fn of(tensor: &[f32], bounds: &[(f32, f32); 3]) -> Self {
        ColourProfile {
            channels: channel_stats(tensor),
            chroma: mean_chroma(tensor, bounds),
        }
    }
}

/// The mean over a CHW tensor's pixels of its chroma: the largest of its channels less the
/// smallest, each as a share of its range (`bounds`), so 0 for a grey pixel and 1 for a pure
/// primary whatever the normalisation.
pub(crate) fn mean_chroma(tensor: &[f32], bounds: &[(f32, f32); 3]) -> f32 {
    let plane = tensor.len() / 3;
    if plane == 0 {
        return 0.0;
    }
    let sum: f64 = (0..plane)
        .map(|i| {
            let p = unit_pixel(tensor, plane, i, bounds);
            let (lo, hi) = p
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            f64::from(hi - lo)
        })
        .sum();
    (sum / plane as f64) as f32
}

/// Pixel `i` of a CHW tensor with `plane` pixels a channel, each channel as a share of its
/// range (`bounds`: 0 black, 1 full scale, whatever the normalisation).
pub(crate) fn unit_pixel(
    tensor: &[f32],
    plane: usize,
    i: usize,
    bounds: &[(f32, f32); 3],
) -> [f32; 3] {
    std::array::from_fn(|c| {
        let (lo, hi) = bounds[c];
        (tensor[c * plane + i] - lo) / (hi - lo).max(f32::EPSILON)
    })
}

/// How far the colour transfer raises an image's chroma at most. Why a cap: a nearly grey
/// image (chroma of a few levels, its JPEG's colour noise) given a colourful donor's chroma
/// would have that noise multiplied into blotches no camera makes; lowering is not capped,
/// since a monochrome donor's chroma (nil) is what a grey source gives.
const MAX_CHROMA_GAIN: f32 = 3.0;

/// Give a CHW tensor the colours `to`: first its per-channel mean and spread (each channel
/// standardised, then rescaled: a cast, a white balance, a contrast), then its chroma (each
/// pixel's channels moved towards or away from their mean by one factor, the donor's mean
/// chroma over the image's), clamped to the values a pixel can take (`bounds`, per channel).
/// Structure stays; only the colour changes. Why the chroma: a monochrome source's channels
/// are alike in mean and spread whatever its brightness and contrast, so matching them alone
/// leaves a colour image's colours in place; scaling the chroma makes it grey. Why in this
/// order: a cast raises the chroma by itself, so the factor is taken after it. Both steps are
/// taken in pixel terms, so it is the same transfer whatever the normalisation.
pub(crate) fn transfer_colour(tensor: &mut [f32], to: &ColourProfile, bounds: &[(f32, f32); 3]) {
    match_channels(tensor, &to.channels, bounds);
    scale_chroma(tensor, to.chroma, bounds);
}

/// Each channel of a CHW tensor standardised, then given the mean and spread `to`, clamped to
/// `bounds`.
fn match_channels(tensor: &mut [f32], to: &[(f32, f32); 3], bounds: &[(f32, f32); 3]) {
    let from = channel_stats(tensor);
    let plane = tensor.len() / 3;
    for c in 0..3 {
        let ((m0, s0), (m1, s1), (lo, hi)) = (from[c], to[c], bounds[c]);
        // A flat channel has no spread to rescale: it is only moved.
        let gain = if s0 > 1e-6 { s1 / s0 } else { 1.0 };
        for v in &mut tensor[c * plane..(c + 1) * plane] {
            *v = ((*v - m0) * gain + m1).clamp(lo, hi);
        }
    }
}

/// Each pixel's channels moved towards (or away from) their mean by the factor that gives the
/// image the mean chroma `to` (raised at most [`MAX_CHROMA_GAIN`] times), clamped to
/// `bounds`. A grey image has no chroma to scale and is left as it is.
fn scale_chroma(tensor: &mut [f32], to: f32, bounds: &[(f32, f32); 3]) {
    let plane = tensor.len() / 3;
    let chroma = mean_chroma(tensor, bounds);
    if chroma <= 1.0 / 255.0 {
        return;
    }
    let gain = (to / chroma).min(MAX_CHROMA_GAIN);
    for i in 0..plane {
        let p = unit_pixel(tensor, plane, i, bounds);
        let mean = (p[0] + p[1] + p[2]) / 3.0;
        for (c, &(lo, hi)) in bounds.iter().enumerate() {
            let v = (mean + gain * (p[c] - mean)).clamp(0.0, 1.0);
            tensor[c * plane + i] = lo + (hi - lo) * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse layer of a constant plane is the constant; of a glow at the left edge (1 at
    /// the edge, falling by half every 4 px), it keeps more of the glow at the edge than a
    /// blur whose windows are cut at the border, and it matches that blur away from the
    /// edges, where no window reaches them.
    #[test]
    fn the_coarse_layer_extends_the_edges() {
        let side = 64;
        let plane = side * side;
        let flat = vec![0.25f32; 3 * plane];
        assert!(coarse_layer(&flat, side)
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-6));
        let glow: Vec<f32> = (0..3 * plane)
            .map(|i| 0.5f32.powf((i % side) as f32 / 4.0))
            .collect();
        let coarse = coarse_layer(&glow, side);
        let cut = box_blur(&glow[..plane], side, side / 16);
        assert!(
            coarse[0] > cut[0] + 0.05,
            "{} against {}",
            coarse[0],
            cut[0]
        );
        let middle = 32 * side + 32;
        assert!((coarse[middle] - cut[middle]).abs() < 1e-6);
        assert_eq!(coarse.len(), glow.len());
    }

    /// The box filter as first written (a closure over both directions, each window summed
    /// afresh): the reference the running sums must match to a few units in the last place.
    fn box_blur_reference(plane: &[f32], width: usize, radius: usize) -> Vec<f32> {
        let width = width.max(1);
        let height = plane.len() / width;
        let pass = |src: &[f32], along_rows: bool| -> Vec<f32> {
            let mut out = vec![0.0; src.len()];
            let (outer, inner) = if along_rows {
                (height, width)
            } else {
                (width, height)
            };
            let at = |o: usize, i: usize| {
                if along_rows {
                    o * width + i
                } else {
                    i * width + o
                }
            };
            for o in 0..outer {
                for i in 0..inner {
                    let lo = i.saturating_sub(radius);
                    let hi = (i + radius).min(inner - 1);
                    let sum: f32 = (lo..=hi).map(|j| src[at(o, j)]).sum();
                    out[at(o, i)] = sum / (hi - lo + 1) as f32;
                }
            }
            out
        };
        let mut b = plane.to_vec();
        for _ in 0..3 {
            b = pass(&pass(&b, true), false);
        }
        b
    }

    #[test]
    fn the_box_filter_matches_its_reference_to_a_few_units_in_the_last_place() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        for (w, h, r) in [
            (64, 64, 1),
            (17, 9, 3),
            (5, 40, 4),
            (1, 6, 2),
            (6, 1, 1),
            (3, 3, 5),
            (176, 176, 8),
            (128, 96, 4),
        ] {
            let mut plane: Vec<f32> = (0..w * h).map(|_| next()).collect();
            plane[0] = -0.0;
            let (a, b) = (box_blur(&plane, w, r), box_blur_reference(&plane, w, r));
            assert_eq!(a.len(), b.len());
            // Values within ±2: an ulp is at most 2.4e-7; the running sums drift by a few.
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst < 2e-6, "{w}x{h} r{r}: {worst}");
        }
        // A plane that is not whole rows: the trailing values come out as 0.
        let plane: Vec<f32> = (0..11).map(|v| v as f32).collect();
        let (a, b) = (box_blur(&plane, 4, 1), box_blur_reference(&plane, 4, 1));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        assert_eq!(a[8..], [0.0; 3]);
    }

    #[test]
    fn a_colour_transfer_gives_the_target_statistics_and_keeps_the_structure() {
        let mut t: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 0.0];
        let wide = [(-100.0, 100.0); 3];
        let to = [(10.0, 2.0), (-1.0, 0.5), (0.5, 1.0)];
        match_channels(&mut t, &to, &wide);
        let got = channel_stats(&t);
        for c in 0..3 {
            assert!((got[c].0 - to[c].0).abs() < 1e-5, "{got:?}");
        }
        // Channels with spread get the target's; the flat one is only moved.
        assert!((got[0].1 - 2.0).abs() < 1e-5 && (got[2].1 - 1.0).abs() < 1e-5);
        assert!(got[1].1.abs() < 1e-6);
        // Order within a channel is kept.
        assert!(t[0] < t[1] && t[1] < t[2] && t[2] < t[3]);
        // Clamped to what a pixel can be.
        let mut u: Vec<f32> = vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let bright = ColourProfile {
            channels: [(5.0, 1.0); 3],
            chroma: 0.0,
        };
        transfer_colour(&mut u, &bright, &[(0.0, 1.0); 3]);
        assert!(u.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn a_grey_donor_makes_the_recipient_grey_and_chroma_scales_by_the_ratio() {
        // Four pixels in ImageNet-like normalised values: pixel p of channel c is
        // (x − mean) / std, so the chroma is read through the bounds.
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        let bounds: [(f32, f32); 3] =
            std::array::from_fn(|c| (-mean[c] / std[c], (1.0 - mean[c]) / std[c]));
        let pixels = [
            [0.8f32, 0.2, 0.1],
            [0.3, 0.6, 0.2],
            [0.5, 0.5, 0.9],
            [0.2, 0.25, 0.3],
        ];
        let tensor = || -> Vec<f32> {
            (0..3)
                .flat_map(|c| pixels.iter().map(move |p| (p[c] - mean[c]) / std[c]))
                .collect()
        };
        let t = tensor();
        // Chroma: 0.7, 0.4, 0.4, 0.1.
        assert!((mean_chroma(&t, &bounds) - 0.4).abs() < 1e-5);
        let profile = ColourProfile::of(&t, &bounds);
        // Grey: the channels equal in every pixel, and the mean brightness kept.
        let grey = ColourProfile {
            chroma: 0.0,
            channels: std::array::from_fn(|c| ((0.4 - mean[c]) / std[c], 0.1 / std[c])),
        };
        let mut g = t.clone();
        transfer_colour(&mut g, &grey, &bounds);
        assert!(mean_chroma(&g, &bounds) < 1e-5, "{g:?}");
        // Half the chroma, the image's own channel statistics otherwise.
        let mut h = t.clone();
        let half = ColourProfile {
            chroma: 0.2,
            ..profile
        };
        transfer_colour(&mut h, &half, &bounds);
        assert!((mean_chroma(&h, &bounds) - 0.2).abs() < 1e-5);
        // The chroma step leaves a grey image grey, and raises a colour image's chroma at
        // most `MAX_CHROMA_GAIN` times.
        let mut still = g.clone();
        scale_chroma(&mut still, 0.4, &bounds);
        assert_eq!(still, g);
        let unit = [(0.0, 1.0); 3];
        let mut faint: Vec<f32> = vec![0.50, 0.52, 0.50, 0.51, 0.50, 0.50];
        let before = mean_chroma(&faint, &unit);
        let vivid = ColourProfile {
            chroma: 100.0 * before,
            channels: channel_stats(&faint),
        };
        transfer_colour(&mut faint, &vivid, &unit);
        let after = mean_chroma(&faint, &unit);
        assert!(
            (after - MAX_CHROMA_GAIN * before).abs() < 1e-5,
            "{before} {after}"
        );
    }

    #[test]
    fn occlusion_fills_only_the_mask_and_paste_copies_it() {
        let mask = vec![true, false, false, true];
        let mut t: Vec<f32> = (0..12).map(|v| v as f32).collect();
        occlude(&mut t, &mask, 2, Fill::Mean, 0);
        assert_eq!(&t[..4], &[1.5, 1.0, 2.0, 1.5]);
        assert_eq!(&t[8..], &[9.5, 9.0, 10.0, 9.5]);
        let donor = vec![-1.0f32; 12];
        paste(&mut t, &donor, &mask);
        assert_eq!(&t[4..8], &[-1.0, 5.0, 6.0, -1.0]);
        let mut n: Vec<f32> = (0..12).map(|v| v as f32).collect();
        occlude(&mut n, &mask, 2, Fill::Noise, 3);
        assert!(n[..4].iter().all(|v| (0.0..=3.0).contains(v)));
    }

    #[test]
    fn fine_detail_is_what_the_low_pass_leaves_and_adding_it_carries_a_stripe_pattern() {
        // 3 channels of 16 × 16: flat 0.5 with every other row darkened on channel 0 (large
        // enough that the low-pass, radius 2, stays within a half of the image).
        let (w, plane) = (16, 256);
        let mut striped = vec![0.5f32; 3 * plane];
        for y in (0..16).step_by(2) {
            striped[y * w..(y + 1) * w]
                .iter_mut()
                .for_each(|v| *v = 0.2);
        }
        let smooth = low_pass(&striped, w);
        // A flat channel has no detail; the stripes' low-pass lies between the two levels.
        assert!(smooth[plane..].iter().all(|v| (v - 0.5).abs() < 1e-6));
        assert!(smooth[3 * w + 3] > 0.2 && smooth[3 * w + 3] < 0.5);
        let mut flat = vec![0.4f32; 3 * plane];
        let wide = [(-10.0, 10.0); 3];
        add_detail(
            &mut flat,
            (&striped, &low_pass(&striped, w)),
            [0, 0],
            (w, &wide),
        );
        // The recipient now has the stripes (darker even rows than odd ones) on channel 0 only.
        assert!(flat[2 * w + 3] < flat[3 * w + 3]);
        assert!(flat[plane..].iter().all(|v| (v - 0.4).abs() < 1e-6));
        // The added detail averages to about nothing: the recipient's colour stays.
        let mean: f32 = flat[..plane].iter().sum::<f32>() / plane as f32;
        assert!((mean - 0.4).abs() < 0.02, "{mean}");
        // Clamped to what a pixel can be.
        let mut bright = vec![1.0f32; 3 * plane];
        add_detail(
            &mut bright,
            (&striped, &low_pass(&striped, w)),
            [0, 0],
            (w, &[(0.0, 1.0); 3]),
        );
        // Moved one row down, the stripes swap: even rows now brighter than odd ones.
        let mut moved = vec![0.4f32; 3 * plane];
        add_detail(
            &mut moved,
            (&striped, &low_pass(&striped, w)),
            [1, 0],
            (w, &wide),
        );
        assert!(moved[2 * w + 3] > moved[3 * w + 3]);
        // Nothing comes in from outside the image: the first row got no detail.
        assert!(moved[..w].iter().all(|v| (v - 0.4).abs() < 1e-6));
        assert!(bright.iter().all(|&v| v <= 1.0));
        assert_eq!(detail_radius(64, 64), 2);
        // Detail where the relevance is: the stripes hold it on the top half, not on a flat
        // tensor; relevance on a flat half of a half-striped tensor sees none.
        let top = [1.0f32, 1.0, 0.0, 0.0];
        assert!(detail_energy((&striped, &low_pass(&striped, w)), w, &top, 2) > 0.0);
        let flat = vec![0.3f32; 3 * plane];
        assert_eq!(detail_energy((&flat, &low_pass(&flat, w)), w, &top, 2), 0.0);
        let mut half = vec![0.5f32; 3 * plane];
        half[..plane].copy_from_slice(&striped[..plane]);
        half[..plane / 2].iter_mut().for_each(|v| *v = 0.5);
        let bottom = [0.0f32, 0.0, 1.0, 1.0];
        let smooth = low_pass(&half, w);
        assert!(
            detail_energy((&half, &smooth), w, &bottom, 2)
                > 10.0 * detail_energy((&half, &smooth), w, &top, 2)
        );
        assert_eq!(detail_radius(224, 300), 7);
        assert_eq!(detail_radius(32, 32), 1);
    }

    #[test]
    fn blur_keeps_flat_planes_and_smooths_a_spike_conserving_its_mass() {
        let flat = vec![2.0f32; 64];
        assert!(blur(&flat, 8).iter().all(|v| (v - 2.0).abs() < 1e-6));
        let mut spike = vec![0.0f32; 32 * 32];
        spike[16 * 32 + 16] = 1.0;
        let b = blur(&spike, 32);
        let total: f32 = b.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(b[16 * 32 + 16] < 0.2 && b[16 * 32 + 17] > 0.0 && b[18 * 32 + 16] > 0.0);
        // Only the mask changes.
        let mut t: Vec<f32> = (0..3 * 64).map(|v| (v % 7) as f32).collect();
        let original = t.clone();
        let mask: Vec<bool> = (0..64).map(|i| i < 8).collect();
        occlude(&mut t, &mask, 8, Fill::Blur, 0);
        for c in 0..3 {
            assert_eq!(
                &t[c * 64 + 8..(c + 1) * 64],
                &original[c * 64 + 8..(c + 1) * 64]
            );
        }
        assert_ne!(&t[..8], &original[..8]);
    }
}

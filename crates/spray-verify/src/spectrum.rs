//! Amplitude spectra of CHW tensors, for the spectrum transfer
//! (`probe/spectrum_transfer.rs`): each channel's 2-D discrete Fourier transform, its
//! amplitudes above a frequency cut given to another image, which keeps its own phases and
//! its amplitudes below the cut (Fourier domain adaptation, Yang & Soatto 2020).
//!
//! Why amplitudes: a difference in how an image was made — compressed hard, blurred, noisy,
//! scanned with lines — is in how much of each fine frequency the image holds, wherever it
//! is; the phases carry where things are (the object's shape), which stays the recipient's.
//!
//! The transforms are rustfft's scalar ones (no SIMD feature), so the same input gives the
//! same bits on every machine; plans are made once per thread and size.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftDirection, FftPlanner};

/// The frequency from which on amplitudes are transferred, in cycles per image side (the
/// radius of (cycles down, cycles across)). Why 4: below it an amplitude spectrum still
/// holds the object's coarse shape and the image's layout. Measured with a reference in
/// NumPy on the analysis' groups (benches/RESULTS.md): from 4 cycles on the transfer carried
/// scanlines (+0.69), sensor noise (+0.50) and a hard JPEG recompression (+0.35); from 8 on
/// the recompression was no longer carried (+0.05).
pub(crate) const CUT_CYCLES: f64 = 4.0;

/// Plans by (length, inverse).
type Plans = HashMap<(usize, bool), Arc<dyn Fft<f32>>>;
/// High-bin masks by (width, height).
type Masks = HashMap<(usize, usize), Rc<Vec<bool>>>;
/// Band maps by (width, height).
type Masks8 = HashMap<(usize, usize), Rc<Vec<u8>>>;

thread_local! {
    static PLANS: RefCell<Plans> = RefCell::new(HashMap::new());
}

/// The plan of a transform of length `n` (`inverse`: the unnormalised inverse).
fn plan(n: usize, inverse: bool) -> Arc<dyn Fft<f32>> {
    PLANS.with(|plans| {
        plans
            .borrow_mut()
            .entry((n, inverse))
            .or_insert_with(|| {
                let direction = if inverse {
                    FftDirection::Inverse
                } else {
                    FftDirection::Forward
                };
                FftPlanner::new().plan_fft(n, direction)
            })
            .clone()
    })
}

/// The 2-D transform of one `height` × `width` plane (row-major) in place: every row, then
/// every column (as rows of the transposed plane: one call per pass, not one per column).
fn transform(plane: &mut [Complex<f32>], width: usize, height: usize, inverse: bool) {
    if width == 0 || height == 0 {
        return;
    }
    let (rows, columns) = (plan(width, inverse), plan(height, inverse));
    let mut scratch = vec![
        Complex::new(0.0, 0.0);
        rows.get_inplace_scratch_len()
            .max(columns.get_inplace_scratch_len())
    ];
    rows.process_with_scratch(plane, &mut scratch);
    let mut transposed = vec![Complex::new(0.0, 0.0); plane.len()];
    transpose(plane, &mut transposed, width, height);
    columns.process_with_scratch(&mut transposed, &mut scratch);
    transpose(&transposed, plane, height, width);
}

/// `src` (`height` rows of `width`) transposed into `dst` (`width` rows of `height`), in
/// tiles of [`TILE`] × [`TILE`]. Why tiles: one of the two sides is always read or written a
/// whole row apart, and at 128 px and more a pixel at a time that missed the cache on every
/// step (the transposes were 7% of the verify stage's samples on a 128 px scenario, as much
/// as the transforms themselves). The values are moved, never computed: the same bits. The
/// box filter (`perturb`) transposes its planes with it too.
pub(crate) fn transpose<T: Copy>(src: &[T], dst: &mut [T], width: usize, height: usize) {
    for y0 in (0..height).step_by(TILE) {
        for x0 in (0..width).step_by(TILE) {
            for y in y0..(y0 + TILE).min(height) {
                for x in x0..(x0 + TILE).min(width) {
                    dst[x * height + y] = src[y * width + x];
                }
            }
        }
    }
}

/// The side of a [`transpose`]'s tiles: 16 × 16 complex values, 2 KB, fit the L1 cache twice.
const TILE: usize = 16;

/// Each channel's spectrum of a CHW tensor (`width` pixels per row); the same tensor's
/// again where this thread transformed it lately (`known`).
fn spectra(tensor: &[f32], width: usize) -> Rc<Vec<Complex<f32>>> {
    let width = width.max(1);
    known::spectrum_of(tensor, width, || transformed(tensor, width))
}

/// [`spectra`] computed.
fn transformed(tensor: &[f32], width: usize) -> Vec<Complex<f32>> {
    let plane = tensor.len() / 3;
    let height = plane / width;
    let mut out: Vec<Complex<f32>> = tensor.iter().map(|&v| Complex::new(v, 0.0)).collect();
    for channel in out.chunks_mut(plane.max(1)) {
        transform(channel, width, height, false);
    }
    out
}

/// Whether bin `i` of a plane (`width` per row) lies at or above [`CUT_CYCLES`]. Bin k of a
/// side n is the frequency k cycles per side, or k − n past the middle.
fn is_high(i: usize, width: usize, height: usize) -> bool {
    let (y, x) = (i / width, i % width);
    let (fy, fx) = (signed_frequency(y, height), signed_frequency(x, width));
    fy * fy + fx * fx >= CUT_CYCLES * CUT_CYCLES
}

/// Bin `k` of a side of `n` as cycles per side: k, or k − n past the middle.
fn signed_frequency(k: usize, n: usize) -> f64 {
    if 2 * k > n {
        k as f64 - n as f64
    } else {
        k as f64
    }
}

/// A bin's amplitude, |re + i·im| (a plain root: `Complex::norm`'s `hypot` guards against
/// overflow that pixel values cannot reach, at several times the cost).
fn magnitude(c: &Complex<f32>) -> f32 {
    (c.re * c.re + c.im * c.im).sqrt()
}

/// The bins of a `height` × `width` plane at or above the cut, once per size and thread.
pub(crate) fn high_bins(width: usize, height: usize) -> Rc<Vec<bool>> {
    thread_local! {
        static MASKS: RefCell<Masks> = RefCell::new(HashMap::new());
    }
    MASKS.with(|masks| {
        masks
            .borrow_mut()
            .entry((width, height))
            .or_insert_with(|| {
                Rc::new(
                    (0..width * height)
                        .map(|i| is_high(i, width, height))
                        .collect(),
                )
            })
            .clone()
    })
}

/// A CHW tensor's energy at and above the cut per channel: the mean |bin|² over the high bins
/// of [`amplitudes`]' spectrum. Computed without a transform, by Parseval: the whole
/// spectrum's energy is the plane's size times its sum of squares, so the high bins' is that
/// less the few low bins' (45 of 4,096 at 64 × 64), each a direct sum over the separable DFT's
/// low frequencies only. Why: every member of every tested class is measured, and a full 2-D
/// transform per image for it was, by count, nearly half the transforms the spectrum test did
/// on the realistic scenarios (benches/RESULTS.md, stop 45).
pub(crate) fn fine_energy(tensor: &[f32], width: usize) -> [f64; 3] {
    let width = width.max(1);
    let plane = tensor.len() / 3;
    let height = plane / width;
    if plane == 0 || height == 0 {
        return [0.0; 3];
    }
    // The bins of a side below the cut, and their frequencies in cycles per side.
    let low = |n: usize| -> Vec<usize> {
        (0..n)
            .filter(|&k| (signed_frequency(k, n)).abs() < CUT_CYCLES)
            .collect()
    };
    let (low_x, low_y) = (low(width), low(height));
    // The twiddle of low bin k at position j of a side of n, e^(−2πi kj / n), looked up once
    // in a table of e^(−2πi m / n) at m = kj mod n and laid out in the order the sums below
    // read them (a modulo in their inner loop was most of this function's time).
    let table = |n: usize| -> Vec<(f64, f64)> {
        (0..n)
            .map(|m| {
                let angle = -2.0 * std::f64::consts::PI * m as f64 / n as f64;
                (angle.cos(), angle.sin())
            })
            .collect()
    };
    // Across a row, by position then bin; down a column, by bin then position.
    let row_table = table(width);
    let across: Vec<(f64, f64)> = (0..width)
        .flat_map(|x| low_x.iter().map(move |&k| (k * x) % width))
        .map(|m| row_table[m])
        .collect();
    let column_table = table(height);
    let down: Vec<Vec<(f64, f64)>> = low_y
        .iter()
        .map(|&k| {
            (0..height)
                .map(|y| column_table[(k * y) % height])
                .collect()
        })
        .collect();

    let high_count = high_bins(width, height).iter().filter(|&&h| h).count();
    let mut out = [0.0; 3];
    for (c, e) in out.iter_mut().enumerate() {
        let channel = &tensor[c * plane..(c + 1) * plane];
        let total = plane as f64 * channel.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
        // Each row's DFT at the low column frequencies: every bin's sum over the row in
        // position order, the bins side by side (independent sums the compiler can
        // interleave; the twiddles of position x for every bin lie together in `across`).
        let rows: Vec<Vec<(f64, f64)>> = channel
            .chunks_exact(width)
            .map(|row| {
                let mut sums = vec![(0.0, 0.0); low_x.len()];
                for (&v, twiddles) in row.iter().zip(across.chunks_exact(low_x.len())) {
                    for ((re, im), &(cos, sin)) in sums.iter_mut().zip(twiddles) {
                        *re += v as f64 * cos;
                        *im += v as f64 * sin;
                    }
                }
                sums
            })
            .collect();
        let mut low_energy = 0.0;
        for (j, &kx) in low_x.iter().enumerate() {
            for (&ky, twiddle) in low_y.iter().zip(&down) {
                if is_high(ky * width + kx, width, height) {
                    continue;
                }
                let (re, im) =
                    rows.iter()
                        .zip(twiddle)
                        .fold((0.0, 0.0), |(re, im), (r, &(cos, sin))| {
                            let (a, b) = r[j];
                            (re + a * cos - b * sin, im + a * sin + b * cos)
                        });
                low_energy += re * re + im * im;
            }
        }
        *e = (total - low_energy).max(0.0) / high_count.max(1) as f64;
    }
    out
}

/// A CHW tensor's amplitudes (|bin| of each channel's spectrum, CHW like the tensor).
pub(crate) fn amplitudes(tensor: &[f32], width: usize) -> Vec<f32> {
    spectra(tensor, width).iter().map(magnitude).collect()
}

/// `target` with its amplitudes at and above [`CUT_CYCLES`] replaced by `amplitude` (another
/// tensor's [`amplitudes`]), its phases and lower amplitudes kept,
/// clamped to the values a pixel can take per channel (`bounds`). A bin without a phase
/// (amplitude 0) takes the amplitude as a real value.
pub(crate) fn give_amplitudes(
    target: &mut [f32],
    amplitude: &[f32],
    (width, bounds): (usize, &[(f32, f32); 3]),
) {
    change_high_bins(target, amplitude, (width, bounds), |bin, amplitude| {
        let norm = magnitude(bin);
        *bin = if norm > 0.0 {
            *bin * (amplitude / norm)
        } else {
            Complex::new(amplitude, 0.0)
        };
    });
}

/// The (width, plane, height) of a CHW tensor of `len` values, `width` per row, where it
/// has a pixel and `other` (what changes it, one value per bin) is as long.
fn planes(len: usize, other: usize, width: usize) -> Option<(usize, usize, usize)> {
    let width = width.max(1);
    let plane = len / 3;
    let height = plane / width;
    (plane > 0 && height > 0 && other == len).then_some((width, plane, height))
}

/// `target` with each channel's bin at and above the cut changed by `change` with its own
/// value of `values` (one per bin, CHW like the tensor), every bin below the cut kept, then
/// transformed back and clamped to `bounds` (`inverse_into`). Values of another size change
/// nothing. What the spectrum transfer gives (`give_amplitudes`) and the pattern transfer's notch
/// (`filter_bins`).
fn change_high_bins(
    target: &mut [f32],
    values: &[f32],
    (width, bounds): (usize, &[(f32, f32); 3]),
    change: impl Fn(&mut Complex<f32>, f32),
) {
    let Some((width, plane, height)) = planes(target.len(), values.len(), width) else {
        return;
    };
    let high = high_bins(width, height);
    let mut spectrum = spectra(target, width).to_vec();
    for (i, bin) in spectrum.iter_mut().enumerate() {
        if high[i % plane] {
            change(bin, values[i]);
        }
    }
    inverse_into(&mut spectrum, target, (width, height, bounds), false);
}

/// The octave a bin of a `height` × `width` plane lies in above the cut: band k holds the
/// radii [CUT · 2^k, CUT · 2^(k+1)) in cycles per side, the last band everything beyond;
/// `None` below the cut. At 64 × 64: 4–8, 8–16, 16–32, 32 and more (four bands).
fn band_of(i: usize, width: usize, height: usize, bands: usize) -> Option<usize> {
    let (y, x) = (i / width, i % width);
    let (fy, fx) = (signed_frequency(y, height), signed_frequency(x, width));
    let radius = (fy * fy + fx * fx).sqrt();
    (radius >= CUT_CYCLES)
        .then(|| ((radius / CUT_CYCLES).log2().floor() as usize).min(bands.saturating_sub(1)))
}

/// How many octave bands a `height` × `width` plane has above the cut (at least one): as many
/// as start below its highest radius, (height/2, width/2).
pub(crate) fn band_count(width: usize, height: usize) -> usize {
    let top = ((height / 2).pow(2) as f64 + (width / 2).pow(2) as f64).sqrt();
    if top < CUT_CYCLES {
        return 1;
    }
    (top / CUT_CYCLES).log2().floor() as usize + 1
}

/// Each bin's band ([`band_of`], `u8::MAX` below the cut), once per size and thread.
fn band_map(width: usize, height: usize) -> Rc<Vec<u8>> {
    thread_local! {
        static BANDS: RefCell<Masks8> = RefCell::new(HashMap::new());
    }
    BANDS.with(|maps| {
        maps.borrow_mut()
            .entry((width, height))
            .or_insert_with(|| {
                let bands = band_count(width, height);
                Rc::new(
                    (0..width * height)
                        .map(|i| band_of(i, width, height, bands).map_or(u8::MAX, |b| b as u8))
                        .collect(),
                )
            })
            .clone()
    })
}

/// A CHW tensor's energy per channel and octave band above the cut ([`band_count`] bands,
/// channel by channel): the mean |bin|² over the band's bins of each channel's spectrum.
/// Read from the tensor's [`power`] (`height` × `width` a channel): each band's bins' power
/// added in bin order, then divided by their count — the pattern and sharpness transfers'
/// screens share one transform a member this way (`probe/class_power.rs`).
pub(crate) fn band_energies_of_power(power: &[f64], width: usize, height: usize) -> Vec<f64> {
    let plane = width * height;
    let bands = band_count(width, height);
    let mut out = vec![0.0f64; 3 * bands];
    if plane == 0 || power.len() < 3 * plane {
        return out;
    }
    let map = band_map(width, height);
    let mut count = vec![0usize; bands];
    map.iter()
        .filter(|&&b| b != u8::MAX)
        .for_each(|&b| count[b as usize] += 1);
    for (c, channel) in power.chunks(plane).take(3).enumerate() {
        for (&p, &b) in channel.iter().zip(map.iter()) {
            if b != u8::MAX {
                out[c * bands + b as usize] += p;
            }
        }
    }
    for (c, e) in out.iter_mut().enumerate() {
        *e /= count[c % bands].max(1) as f64;
    }
    out
}

/// `target` with each channel's bins in each octave band above the cut multiplied by that
/// channel's and band's gain (`gains`, laid out as [`band_energies_of_power`]; gain
/// `sign`-th power: 1 gives, −1 takes away), its phases and every bin below the cut kept;
/// clamped to the values a pixel can take per channel (`bounds`). A filter that is 1
/// everywhere changes nothing; gains of another size change nothing either.
pub(crate) fn filter_bands(
    target: &mut [f32],
    gains: &[f64],
    (width, sign, bounds): (usize, f64, &[(f32, f32); 3]),
) {
    let width = width.max(1);
    let plane = target.len() / 3;
    let height = plane / width;
    let bands = band_count(width, height);
    if plane == 0 || height == 0 || gains.len() != 3 * bands {
        return;
    }
    let map = band_map(width, height);
    let mut spectrum = spectra(target, width).to_vec();
    for (c, channel) in spectrum.chunks_mut(plane).enumerate() {
        let gain: Vec<f32> = (0..bands)
            .map(|b| gains[c * bands + b].powf(sign) as f32)
            .collect();
        for (bin, &b) in channel.iter_mut().zip(map.iter()) {
            if b != u8::MAX {
                *bin *= gain[b as usize];
            }
        }
    }
    inverse_into(&mut spectrum, target, (width, height, bounds), false);
}

/// A CHW tensor's power spectrum: |bin|² of each channel's transform, CHW like the tensor.
/// Transformed afresh, not kept (`known`): a class's screen takes each member's once, and
/// keeping them pushed the recipients' spectra out (on held-resnet-128, 604 transforms read
/// back where 553 were).
pub(crate) fn power(tensor: &[f32], width: usize) -> Vec<f64> {
    transformed(tensor, width.max(1))
        .iter()
        .map(|c| (c.re as f64).powi(2) + (c.im as f64).powi(2))
        .collect()
}

/// `target` with each channel's bins at and above the cut multiplied by `gains` (one per bin,
/// CHW like the tensor), its phases and every bin below the cut kept; clamped to the values a
/// pixel can take per channel (`bounds`). Gains of another size change nothing.
pub(crate) fn filter_bins(
    target: &mut [f32],
    gains: &[f32],
    (width, bounds): (usize, &[(f32, f32); 3]),
) {
    change_high_bins(target, gains, (width, bounds), |bin, gain| *bin *= gain);
}

/// `target` plus a texture whose spectrum has the amplitudes `amplitude` (one per bin, CHW
/// like the tensor; bins below the cut give nothing) under random phases drawn from `seed`:
/// one phase field for the three channels, so that a colourless pattern stays colourless.
/// The phases are those of seeded white noise's transform, which are Hermitian, so the
/// texture is real. Clamped to the values a pixel can take per channel (`bounds`).
pub(crate) fn add_texture(
    target: &mut [f32],
    amplitude: &[f32],
    (width, seed, bounds): (usize, u64, &[(f32, f32); 3]),
) {
    let Some((width, plane, height)) = planes(target.len(), amplitude.len(), width) else {
        return;
    };
    let noise = noise_spectrum(width, height, seed);
    let high = high_bins(width, height);
    let mut spectrum = vec![Complex::new(0.0f32, 0.0); target.len()];
    for (i, bin) in spectrum.iter_mut().enumerate() {
        let p = i % plane;
        let n = noise[p];
        let norm = magnitude(&n);
        if high[p] && norm > 0.0 {
            *bin = n * (amplitude[i] / norm);
        }
    }
    inverse_into(&mut spectrum, target, (width, height, bounds), true);
}

/// `target` plus `tensor` (CHW like it) at and above the cut, each bin's phase turned by a
/// random angle drawn from `seed` and its amplitude scaled by `scale`: the same angle for
/// the three channels' bin, so that what lies between the channels (a colourless pattern, or
/// noise of its own in each channel) stays as it was, and nothing of where anything lies
/// does. The angles are those of seeded white noise's transform ([`add_texture`]'s), which
/// are Hermitian, as a real tensor's phases are, so the texture is real. Clamped to `bounds`.
pub(crate) fn add_scrambled(
    target: &mut [f32],
    tensor: &[f32],
    (width, seed, scale, bounds): (usize, u64, f32, &[(f32, f32); 3]),
) {
    let Some((width, plane, height)) = planes(target.len(), tensor.len(), width) else {
        return;
    };
    let noise = noise_spectrum(width, height, seed);
    let high = high_bins(width, height);
    let mut spectrum = spectra(tensor, width).to_vec();
    for (i, bin) in spectrum.iter_mut().enumerate() {
        let p = i % plane;
        let n = noise[p];
        let norm = magnitude(&n);
        *bin = if high[p] && norm > 0.0 {
            *bin * (n * (scale / norm))
        } else {
            Complex::new(0.0, 0.0)
        };
    }
    inverse_into(&mut spectrum, target, (width, height, bounds), true);
}

/// The transform of seeded white noise on a `height` × `width` plane, whose phases the
/// textures take.
fn noise_spectrum(width: usize, height: usize, seed: u64) -> Rc<Vec<Complex<f32>>> {
    known::noise_of((width, height, seed), || {
        noise_transformed(width, height, seed)
    })
}

/// [`noise_spectrum`] computed.
fn noise_transformed(width: usize, height: usize, seed: u64) -> Vec<Complex<f32>> {
    let mut state = seed ^ 0x2545_F491_4F6C_DD1D;
    let mut noise: Vec<Complex<f32>> = (0..width * height)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Complex::new((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0, 0.0)
        })
        .collect();
    transform(&mut noise, width, height, false);
    noise
}

/// Each channel of `spectrum` transformed back into `target` (`add`: onto it), clamped to the
/// values a pixel can take per channel.
fn inverse_into(
    spectrum: &mut [Complex<f32>],
    target: &mut [f32],
    (width, height, bounds): (usize, usize, &[(f32, f32); 3]),
    add: bool,
) {
    let plane = width * height;
    let scale = 1.0 / plane as f32;
    for (c, (channel, out)) in spectrum
        .chunks_mut(plane)
        .zip(target.chunks_mut(plane))
        .enumerate()
    {
        transform(channel, width, height, true);
        let (lo, hi) = bounds[c.min(2)];
        for (o, v) in out.iter_mut().zip(channel.iter()) {
            let value = v.re * scale;
            *o = if add { *o + value } else { value }.clamp(lo, hi);
        }
    }
}

/// Two classes of images with a fine texture, for the tests of the spectrum and sharpness
/// transfers.
#[cfg(test)]
pub(crate) mod fake {
    use crate::groups::AnalysedGroups;
    use crate::images::fake::Images;
    use crate::members::{two_classes_of, MembersByClass};
    use crate::scorer::fake::LinearModel;
    use crate::scorer::Scorer;

    /// The side of [`checker_classes`]' images: 8 × 8, the smallest with a bin at 4 cycles.
    pub(crate) const CHECKER: usize = 8;

    /// Two classes of 8 × 8 images for the tests of fine frequencies. A checkerboard is the
    /// finest pattern there is (4 cycles per side each way): channel 0 holds 0.5 ± a texture
    /// of amplitude a. Class 0's model weighs the checkerboard by `texture` (its shortcut: more
    /// texture, or with a negative weight less), its object (channel 1, uniform: no fine
    /// content) by 2 and channel 2 by 3; class 1's weighs channel 2 by `ground`. Images: three
    /// of class 0 with texture `a[0]`, no object, ground 0.1 (the group); three with `a[1]`,
    /// the object, ground 0.1; six of class 1 with `a[2]`, no object, ground 0.6. The group's
    /// maps are even, the others' on the last cell (`members::two_classes_of`).
    pub(crate) fn checker_classes(
        (texture, ground): (f32, f32),
        a: [f32; 3],
    ) -> (LinearModel, Images, MembersByClass, AnalysedGroups) {
        const S: usize = CHECKER;
        let plane = S * S;
        let checker = |y: usize, x: usize| if (x + y).is_multiple_of(2) { 1.0 } else { -1.0 };
        let mut class0 = vec![0.0f32; 3 * plane];
        let mut class1 = vec![0.0f32; 3 * plane];
        for y in 0..S {
            for x in 0..S {
                class0[y * S + x] = texture * checker(y, x);
                class0[plane + y * S + x] = 2.0;
                class0[2 * plane + y * S + x] = 3.0;
                class1[2 * plane + y * S + x] = ground;
            }
        }
        let make = |a: f32, object: f32, ground: f32| {
            let mut t = vec![0.0f32; 3 * plane];
            for y in 0..S {
                for x in 0..S {
                    t[y * S + x] = 0.5 + a * checker(y, x);
                    t[plane + y * S + x] = object;
                    t[2 * plane + y * S + x] = ground;
                }
            }
            t
        };
        let mut tensors = Vec::new();
        tensors.extend((0..3).map(|_| make(a[0], 0.0, 0.1)));
        tensors.extend((0..3).map(|_| make(a[1], 1.0, 0.1)));
        tensors.extend((0..6).map(|_| make(a[2], 0.0, 0.6)));
        let mut model = LinearModel {
            weights: vec![class0, class1],
            scored: 0,
        };
        let logits = model.logits(&tensors).unwrap();
        let (by_class, analysed) = two_classes_of(&logits, (6, 3), |i| {
            if i < 3 {
                vec![0.25; 4]
            } else {
                vec![0.0, 0.0, 0.0, 1.0]
            }
        });
        (model, Images(tensors), by_class, analysed)
    }
}

mod known;
#[cfg(test)]
mod tests;

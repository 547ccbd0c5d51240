//! What the stage does to images: fill a region (mean colour, seeded noise, blur), paste a
//! region from another image, and give an image another's colour statistics. Tensors are CHW
//! with three channels; masks are one plane.

use crate::settings::Fill;

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
/// radius max(1, shorter side / 16) with clamped edges (≈ a Gaussian of σ ≈ 1.4 · radius).
fn blur(plane: &[f32], width: usize) -> Vec<f32> {
    let width = width.max(1);
    let height = plane.len() / width;
    let radius = (width.min(height) / 16).max(1);
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

/// Give a CHW tensor the per-channel mean and spread `to` (each channel standardised, then
/// rescaled: a per-channel colour transfer), clamped to the values a pixel can take there
/// (`bounds`, per channel). Structure stays; only the colour changes. Per-channel affine
/// normalisation commutes with it, so it is the same transfer in pixel or tensor values.
pub(crate) fn transfer_colour(tensor: &mut [f32], to: &[(f32, f32); 3], bounds: &[(f32, f32); 3]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colour_transfer_gives_the_target_statistics_and_keeps_the_structure() {
        let mut t: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 0.0];
        let wide = [(-100.0, 100.0); 3];
        let to = [(10.0, 2.0), (-1.0, 0.5), (0.5, 1.0)];
        transfer_colour(&mut t, &to, &wide);
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
        transfer_colour(&mut u, &[(5.0, 1.0); 3], &[(0.0, 1.0); 3]);
        assert!(u.iter().all(|&v| v == 1.0));
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

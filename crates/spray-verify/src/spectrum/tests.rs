//! The spectrum's tests: the transforms, the bins and bands, what each transfer gives.

use super::*;

/// A tensor's [`band_energies_of_power`], from its own transform.
fn band_energies(t: &[f32], width: usize) -> Vec<f64> {
    band_energies_of_power(&power(t, width), width, t.len() / 3 / width)
}

/// The band energies as first written (the squares summed straight from each channel's
/// spectrum): the reference the shared reading must match bit for bit.
fn band_energies_reference(tensor: &[f32], width: usize) -> Vec<f64> {
    let plane = tensor.len() / 3;
    let height = plane / width;
    let bands = band_count(width, height);
    let mut out = vec![0.0f64; 3 * bands];
    let map = band_map(width, height);
    let mut count = vec![0usize; bands];
    map.iter()
        .filter(|&&b| b != u8::MAX)
        .for_each(|&b| count[b as usize] += 1);
    for (c, channel) in spectra(tensor, width).chunks(plane).enumerate() {
        for (bin, &b) in channel.iter().zip(map.iter()) {
            if b != u8::MAX {
                out[c * bands + b as usize] += (bin.re as f64).powi(2) + (bin.im as f64).powi(2);
            }
        }
    }
    for (c, e) in out.iter_mut().enumerate() {
        *e /= count[c % bands].max(1) as f64;
    }
    out
}

#[test]
fn band_energies_read_from_the_power_are_the_same_bits() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2000) as f32 / 1000.0 - 1.0
    };
    for (w, h) in [(64, 64), (128, 128), (48, 32), (7, 5)] {
        let t: Vec<f32> = (0..3 * w * h).map(|_| next()).collect();
        let (a, b) = (band_energies(&t, w), band_energies_reference(&t, w));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len(),
            "{w}x{h}"
        );
    }
}

#[test]
fn a_tiled_transpose_moves_every_value_to_its_mirror_place() {
    // 37 × 21: neither side a multiple of the tile, both longer than one.
    let (width, height) = (37, 21);
    let src: Vec<Complex<f32>> = (0..width * height)
        .map(|i| Complex::new(i as f32, -(i as f32)))
        .collect();
    let mut dst = vec![Complex::new(0.0, 0.0); src.len()];
    transpose(&src, &mut dst, width, height);
    for y in 0..height {
        for x in 0..width {
            assert_eq!(dst[x * height + y], src[y * width + x]);
        }
    }
    let mut back = vec![Complex::new(0.0, 0.0); src.len()];
    transpose(&dst, &mut back, height, width);
    assert_eq!(back, src);
}

const OPEN: [(f32, f32); 3] = [(-100.0, 100.0); 3];

fn tensor(width: usize, height: usize, seed: u32) -> Vec<f32> {
    (0..3 * width * height)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 16;
            (v % 1000) as f32 / 500.0 - 1.0
        })
        .collect()
}

/// A texture holds exactly the amplitudes asked for at the fine bins and nothing below
/// the cut; its phases come from the seed alone, the same in every channel.
#[test]
fn a_texture_has_the_amplitudes_given_under_seeded_phases() {
    let (w, h) = (16, 12);
    let plane = w * h;
    let high = high_bins(w, h);
    // A symmetric amplitude (a real image's): 1 + the bin's frequency sum, channel c
    // scaled by c + 1, zero below the cut.
    let mut amplitude = vec![0.0f32; 3 * plane];
    for c in 0..3 {
        for i in 0..plane {
            let (fy, fx) = (signed_frequency(i / w, h), signed_frequency(i % w, w));
            if high[i] {
                amplitude[c * plane + i] = (c + 1) as f32 * (1.0 + (fy.abs() + fx.abs()) as f32);
            }
        }
    }
    let textured = |seed: u64| {
        let mut t = vec![0.0f32; 3 * plane];
        add_texture(&mut t, &amplitude, (w, seed, &OPEN));
        t
    };
    let t = textured(7);
    let a = amplitudes(&t, w);
    for i in 0..3 * plane {
        assert!(
            (a[i] - amplitude[i]).abs() < 1e-3,
            "bin {i}: {} against {}",
            a[i],
            amplitude[i]
        );
    }
    // One phase field: channel c is c + 1 times channel 0.
    for i in 0..plane {
        assert!((t[plane + i] - 2.0 * t[i]).abs() < 1e-4);
        assert!((t[2 * plane + i] - 3.0 * t[i]).abs() < 1e-4);
    }
    assert_eq!(textured(7), t);
    assert_ne!(textured(8), t);
}

/// A scrambled tensor holds the tensor's fine amplitudes times the scale and nothing below
/// the cut; each bin's phase is turned by one angle in every channel, so the phase between
/// two channels stays the tensor's; the angles come from the seed alone.
#[test]
fn a_scrambled_tensor_keeps_its_fine_amplitudes_and_the_phases_between_channels() {
    let (w, h) = (16, 12);
    let plane = w * h;
    let t = tensor(w, h, 4);
    let scrambled = |seed: u64, scale: f32| {
        let mut out = vec![0.0f32; 3 * plane];
        add_scrambled(&mut out, &t, (w, seed, scale, &OPEN));
        out
    };
    let s = scrambled(7, 2.0);
    let high = high_bins(w, h);
    let (before, after) = (spectra(&t, w), spectra(&s, w));
    for i in 0..3 * plane {
        let want = if high[i % plane] {
            2.0 * magnitude(&before[i])
        } else {
            0.0
        };
        assert!((magnitude(&after[i]) - want).abs() < 1e-3, "bin {i}");
    }
    for p in (0..plane).filter(|&p| high[p]) {
        let between = |s: &[Complex<f32>]| s[plane + p] * s[p].conj();
        let (was, is) = (between(&before), between(&after));
        // The same angle between channels 0 and 1 (the product's scale is 4).
        assert!(
            (is - was * 4.0).norm() < 1e-2 * (1.0 + was.norm()),
            "bin {p}"
        );
    }
    assert_eq!(scrambled(7, 2.0), s);
    assert_ne!(scrambled(8, 2.0), s);
    assert_ne!(
        spectra(&s, w)[5 * w + 5].arg(),
        before[5 * w + 5].arg(),
        "the phases are turned"
    );
}

/// A filter of ones changes nothing; one of zeros keeps only what lies below the cut.
#[test]
fn filtering_bins_scales_the_fine_bins_only() {
    let (w, h) = (16, 12);
    let t = tensor(w, h, 9);
    let mut same = t.clone();
    filter_bins(&mut same, &vec![1.0; t.len()], (w, &OPEN));
    assert!(same.iter().zip(&t).all(|(a, b)| (a - b).abs() < 1e-4));
    let mut coarse = t.clone();
    filter_bins(&mut coarse, &vec![0.0; t.len()], (w, &OPEN));
    let high = high_bins(w, h);
    let (a, before) = (amplitudes(&coarse, w), amplitudes(&t, w));
    for i in 0..t.len() {
        let want = if high[i % (w * h)] { 0.0 } else { before[i] };
        assert!((a[i] - want).abs() < 1e-3, "bin {i}");
    }
}

/// The fine energy by Parseval is the mean |bin|² over the transform's high bins.
#[test]
fn fine_energy_is_the_high_bins_energy_of_the_transform() {
    for (w, h, seed) in [(8, 8, 1), (16, 12, 2), (5, 7, 3), (64, 64, 4), (3, 2, 5)] {
        let t = tensor(w, h, seed);
        let a = amplitudes(&t, w);
        let plane = w * h;
        let high: Vec<usize> = (0..plane).filter(|&i| is_high(i, w, h)).collect();
        let got = fine_energy(&t, w);
        for c in 0..3 {
            let want = high
                .iter()
                .map(|&i| (a[c * plane + i] as f64).powi(2))
                .sum::<f64>()
                / high.len().max(1) as f64;
            assert!(
                (got[c] - want).abs() <= 1e-5 * want.max(1e-3),
                "{w}x{h} channel {c}: {} against {want}",
                got[c]
            );
        }
    }
}

#[test]
fn the_transform_matches_a_direct_dft() {
    let (w, h) = (6, 5);
    let t = tensor(w, h, 3);
    let got = spectra(&t, w);
    for c in 0..3 {
        for (ky, kx) in [(0, 0), (1, 2), (4, 5), (2, 3)] {
            let mut want = Complex::new(0.0f64, 0.0);
            for y in 0..h {
                for x in 0..w {
                    let phase = -2.0
                        * std::f64::consts::PI
                        * ((ky * y) as f64 / h as f64 + (kx * x) as f64 / w as f64);
                    want += Complex::from_polar(t[c * w * h + y * w + x] as f64, phase);
                }
            }
            let g = got[c * w * h + ky * w + kx];
            assert!((g.re as f64 - want.re).abs() < 1e-4, "{g} vs {want}");
            assert!((g.im as f64 - want.im).abs() < 1e-4, "{g} vs {want}");
        }
    }
}

#[test]
fn an_image_given_its_own_amplitudes_is_unchanged() {
    let (w, h) = (16, 12);
    let t = tensor(w, h, 7);
    let mut u = t.clone();
    give_amplitudes(&mut u, &amplitudes(&t, w), (w, &OPEN));
    for (a, b) in t.iter().zip(&u) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn the_recipient_keeps_its_low_frequencies_and_takes_the_high_amplitudes() {
    let (w, h) = (16, 16);
    let (r, d) = (tensor(w, h, 1), tensor(w, h, 2));
    let mut u = r.clone();
    give_amplitudes(&mut u, &amplitudes(&d, w), (w, &OPEN));
    let (before, after, donor) = (spectra(&r, w), spectra(&u, w), spectra(&d, w));
    let plane = w * h;
    let mut high = 0;
    for i in 0..3 * plane {
        if is_high(i % plane, w, h) {
            high += 1;
            assert!((after[i].norm() - donor[i].norm()).abs() < 1e-3);
            // Its own phase, where it has one.
            if before[i].norm() > 1e-3 {
                let turn = after[i] * before[i].conj();
                assert!(turn.im.abs() < 1e-3 * turn.norm().max(1.0));
            }
        } else {
            assert!((after[i] - before[i]).norm() < 1e-3);
        }
    }
    // The mean (bin 0) and the lowest bins are low; most of a 16 px plane is high.
    assert!(!is_high(0, w, h) && !is_high(3, w, h) && is_high(4, w, h));
    assert!(!is_high(w - 3, w, h) && is_high(8 * w + 8, w, h));
    assert!(high > 3 * plane / 2);
}

#[test]
fn values_are_clamped_and_a_mismatched_spectrum_changes_nothing() {
    let (w, h) = (8, 8);
    let r = tensor(w, h, 4);
    let loud: Vec<f32> = amplitudes(&r, w).iter().map(|a| a * 50.0).collect();
    let mut u = r.clone();
    give_amplitudes(&mut u, &loud, (w, &[(-1.0, 1.0); 3]));
    assert!(u.iter().all(|v| (-1.0..=1.0).contains(v)));
    let mut v = r.clone();
    give_amplitudes(&mut v, &loud[1..], (w, &OPEN));
    assert_eq!(v, r);
}
#[test]
fn the_bands_are_octaves_above_the_cut() {
    // 64 × 64: 4–8, 8–16, 16–32 and 32 on (the corner, 45 cycles, in the last).
    assert_eq!(band_count(64, 64), 4);
    assert_eq!(band_count(224, 224), 6);
    assert_eq!(band_count(8, 8), 1);
    let at = |fy: usize, fx: usize| band_of(fy * 64 + fx, 64, 64, 4);
    assert_eq!(at(0, 3), None);
    assert_eq!(at(0, 4), Some(0));
    assert_eq!(at(5, 5), Some(0));
    assert_eq!(at(0, 8), Some(1));
    assert_eq!(at(0, 63), None);
    assert_eq!(at(0, 60), Some(0));
    assert_eq!(at(20, 20), Some(2));
    assert_eq!(at(32, 32), Some(3));
}

#[test]
fn band_energies_add_up_to_the_fine_energy() {
    let (w, h) = (16, 12);
    let t = tensor(w, h, 5);
    let bands = band_count(w, h);
    let per_band = band_energies(&t, w);
    let fine = fine_energy(&t, w);
    let map = band_map(w, h);
    let count: Vec<f64> = (0..bands)
        .map(|b| map.iter().filter(|&&m| m as usize == b).count() as f64)
        .collect();
    let high = count.iter().sum::<f64>();
    for c in 0..3 {
        let total: f64 = (0..bands).map(|b| per_band[c * bands + b] * count[b]).sum();
        assert!((total / high - fine[c]).abs() < 1e-4 * fine[c], "{c}");
    }
}

#[test]
fn a_band_filter_scales_each_band_and_keeps_the_rest() {
    let (w, h) = (16, 16);
    let t = tensor(w, h, 9);
    let bands = band_count(w, h);
    let gains: Vec<f64> = (0..3 * bands).map(|i| 0.5 + 0.25 * i as f64).collect();
    let mut u = t.clone();
    filter_bands(&mut u, &gains, (w, 1.0, &OPEN));
    let (before, after) = (band_energies(&t, w), band_energies(&u, w));
    for i in 0..3 * bands {
        let want = before[i] * gains[i].powi(2);
        assert!(
            (after[i] - want).abs() < 1e-3 * want,
            "{i}: {} vs {want}",
            after[i]
        );
    }
    // Below the cut: the image's own bins.
    let (sb, sa) = (spectra(&t, w), spectra(&u, w));
    for i in 0..3 * w * h {
        if !is_high(i % (w * h), w, h) {
            assert!((sb[i] - sa[i]).norm() < 1e-3);
        }
    }
    // Taking it away again (the gains' inverse) gives the image back; ones change
    // nothing; gains of another size change nothing.
    filter_bands(&mut u, &gains, (w, -1.0, &OPEN));
    for (a, b) in t.iter().zip(&u) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let mut same = t.clone();
    filter_bands(&mut same, &vec![1.0; 3 * bands], (w, 1.0, &OPEN));
    for (a, b) in t.iter().zip(&same) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let mut other = t.clone();
    filter_bands(&mut other, &[2.0; 3], (w, 1.0, &OPEN));
    assert_eq!(other, t);
}

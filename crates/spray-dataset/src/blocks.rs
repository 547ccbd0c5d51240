//! How blocky a decoded file is on the 8-pixel grid that JPEG codes its luma in: the
//! statistic the analysis's compression space groups images by.
//!
//! Why: a source that compresses harder (a camera, a scanner, a web crawl) leaves its images
//! with 8 × 8 blocks that the model can learn as a shortcut. The blocks are spread over the
//! whole image, so no relevance map shows them in one place, and the lost fine texture varies
//! with the content as much as with the compression: on the realistic scenarios a class's
//! recompressed images differed from the rest by under one standard deviation in fine energy,
//! but by five or more in this ratio (benches/RESULTS.md). It is taken from the file as
//! decoded, before any crop or resize: JPEG's grid is the file's own, and a resize to the
//! model's input smears it.

use image::RgbImage;

/// The side of the blocks JPEG codes its luma in.
const BLOCK: usize = 8;

/// What keeps the ratio finite and quiet on flat images: luma steps below about this (in
/// 0–255 units) are noise, not edges.
const FLOOR: f64 = 0.5;

/// `[across rows, across columns]`: per direction, the natural log of the mean absolute luma
/// step (0–255) across the 8-pixel grid's lines over the mean step everywhere else, each plus
/// 0.5. About 0 for an image without blocks (a photograph saved at high quality, a PNG, a
/// resized JPEG), about 1 for one compressed hard (JPEG quality 12); 0 where the image has no
/// grid line in that direction (under 9 pixels).
pub fn block_stats(image: &RgbImage) -> [f32; 2] {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let luma: Vec<f64> = image
        .pixels()
        .map(|p| 0.299 * f64::from(p.0[0]) + 0.587 * f64::from(p.0[1]) + 0.114 * f64::from(p.0[2]))
        .collect();
    let at = |x: usize, y: usize| luma[y * w + x];
    // Across rows: the step from row y to y + 1, on the grid where y + 1 is a multiple of 8.
    let rows = ratio(h, w, |y, x| (at(x, y + 1) - at(x, y)).abs());
    let columns = ratio(w, h, |x, y| (at(x + 1, y) - at(x, y)).abs());
    [rows as f32, columns as f32]
}

/// The log ratio of the mean step on the grid's lines to the mean off them, along an axis of
/// `len` pixels (`step(i, j)`: from i to i + 1 at j of `other`).
fn ratio(len: usize, other: usize, step: impl Fn(usize, usize) -> f64) -> f64 {
    let (mut on, mut on_n, mut off, mut off_n) = (0.0, 0usize, 0.0, 0usize);
    for i in 0..len.saturating_sub(1) {
        let line: f64 = (0..other).map(|j| step(i, j)).sum();
        if (i + 1) % BLOCK == 0 {
            on += line;
            on_n += other;
        } else {
            off += line;
            off_n += other;
        }
    }
    if on_n == 0 || off_n == 0 {
        return 0.0;
    }
    ((on / on_n as f64 + FLOOR) / (off / off_n as f64 + FLOOR)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth, textured test picture: no edge on the grid more than off it.
    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |a: f64| (127.0 + 100.0 * a.sin()) as u8;
            let (x, y) = (f64::from(x), f64::from(y));
            image::Rgb([
                v(x * 0.37 + y * 0.11),
                v(x * 0.23 - y * 0.41),
                v((x * y).sqrt()),
            ])
        })
    }

    fn jpeg(image: &RgbImage, quality: u8) -> RgbImage {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode_image(image)
            .unwrap();
        image::load_from_memory(&bytes).unwrap().to_rgb8()
    }

    #[test]
    fn a_hard_compression_is_blocky_a_light_one_is_not() {
        let clean = picture(72, 72);
        let [r, c] = block_stats(&clean);
        assert!(r.abs() < 0.1 && c.abs() < 0.1, "{r} {c}");
        let light = block_stats(&jpeg(&clean, 90));
        let hard = block_stats(&jpeg(&clean, 12));
        assert!(light.iter().all(|v| v.abs() < 0.25), "{light:?}");
        // Smooth content: blockier by well over the verify stage's margin (0.25) still.
        assert!(hard.iter().all(|&v| v > 0.4), "{hard:?}");
    }

    #[test]
    fn steps_on_the_grid_alone_are_counted_by_direction() {
        // Bands of 8 rows, each 10 brighter than the one above: every step across rows is on
        // the grid (10 against 0), none across columns.
        let bands = RgbImage::from_fn(16, 24, |_, y| {
            let v = 50 + 10 * (y / 8) as u8;
            image::Rgb([v, v, v])
        });
        let [r, c] = block_stats(&bands);
        assert!((f64::from(r) - (10.5f64 / 0.5).ln()).abs() < 1e-4, "{r}");
        assert_eq!(c, 0.0);
    }

    #[test]
    fn tiny_and_flat_images_give_zero() {
        assert_eq!(block_stats(&picture(8, 8)), [0.0, 0.0]);
        assert_eq!(block_stats(&RgbImage::new(1, 1)), [0.0, 0.0]);
        let flat = RgbImage::from_pixel(32, 32, image::Rgb([9, 9, 9]));
        assert_eq!(block_stats(&flat), [0.0, 0.0]);
    }
}

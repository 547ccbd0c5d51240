//! How blocky a decoded file is on the 8-pixel grid that JPEG codes its luma in: one of the
//! statistics the analysis's compression space groups images by (the other: the quality the
//! file was last saved at, `quantisation.rs`).
//!
//! Why: a source that compresses harder (a camera, a scanner, a web crawl) leaves its images
//! with 8 × 8 blocks that the model can learn as a shortcut. The blocks are spread over the
//! whole image, so no relevance map shows them in one place, and the lost fine texture varies
//! with the content as much as with the compression: on the realistic scenarios a class's
//! recompressed images differed from the rest by under one standard deviation in fine energy,
//! but lay about five of the rest's standard deviations above it in this ratio (0.85 against
//! 0.06 ± 0.15, benches/RESULTS.md). It is taken from the file as
//! decoded, before any crop or resize: JPEG's grid is the file's own, and a resize to the
//! model's input smears it. A file resized after its compression has its blocks at another
//! period, which this does not see.

use image::RgbImage;

/// The side of the blocks JPEG codes its luma in.
const BLOCK: usize = 8;

/// What keeps the ratio finite and quiet on flat images: luma steps below about this (in
/// 0–255 units) are noise, not edges.
const FLOOR: f64 = 0.5;

/// `[across rows, across columns]`: per direction, the natural log of the mean absolute luma
/// step (0–255) across the 8-pixel grid's lines over the mean step everywhere else, each plus
/// 0.5. About 0 for a photograph without blocks (saved at high quality, or resized after its
/// compression), about 1 for one compressed hard (JPEG quality 12); 0 where the image has no
/// grid line in that direction (under 9 pixels). Only a JPEG file's value means compression
/// (`Preprocess::load` measures no other format): drawn content can have edges on the grid.
pub fn block_stats(image: &RgbImage) -> [f32; 2] {
    let w = image.width() as usize;
    // Row by row, two rows of luma at a time: a 12-megapixel photograph would need 96 MB
    // more for its whole luma plane, in each of a batch's decoding threads.
    let luma = |y: usize, row: &mut Vec<f64>| {
        row.clear();
        row.extend(
            image.as_raw()[3 * w * y..3 * w * (y + 1)]
                .chunks_exact(3)
                .map(|p| {
                    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
                }),
        );
    };
    let (mut across_rows, mut across_columns) = (Steps::default(), Steps::default());
    let (mut previous, mut current): (Vec<f64>, Vec<f64>) =
        (Vec::with_capacity(w), Vec::with_capacity(w));
    for y in 0..image.height() as usize {
        luma(y, &mut current);
        for (x, pair) in current.windows(2).enumerate() {
            across_columns.add(x, (pair[1] - pair[0]).abs());
        }
        if y > 0 {
            // The step from row y − 1 to y, on the grid where y is a multiple of 8.
            for (a, b) in previous.iter().zip(&current) {
                across_rows.add(y - 1, (b - a).abs());
            }
        }
        std::mem::swap(&mut previous, &mut current);
    }
    [
        across_rows.log_ratio() as f32,
        across_columns.log_ratio() as f32,
    ]
}

/// Luma steps along one direction, on the 8-pixel grid's lines and off them.
#[derive(Default)]
struct Steps {
    on: f64,
    on_n: usize,
    off: f64,
    off_n: usize,
}

impl Steps {
    /// The step from pixel `i` to `i + 1`: on a grid line where `i + 1` is a multiple of 8.
    fn add(&mut self, i: usize, step: f64) {
        if (i + 1).is_multiple_of(BLOCK) {
            self.on += step;
            self.on_n += 1;
        } else {
            self.off += step;
            self.off_n += 1;
        }
    }

    /// The log ratio of the mean step on the grid's lines to the mean off them, each plus
    /// [`FLOOR`]; 0 where there is no step on a line or none off one.
    fn log_ratio(&self) -> f64 {
        if self.on_n == 0 || self.off_n == 0 {
            return 0.0;
        }
        ((self.on / self.on_n as f64 + FLOOR) / (self.off / self.off_n as f64 + FLOOR)).ln()
    }
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

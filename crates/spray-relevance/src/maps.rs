//! From relevance tensors to stored maps: channel sum, sum-pooling, pooled inputs, thumbnails.

use image::RgbImage;
use spray_store::relevance::grid_bin;
pub use spray_store::relevance::sum_pool;

/// Sum a CHW tensor over its channels: an H×W map, row-major.
pub fn channel_sum(chw: &[f32], channels: usize, h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    let mut out = chw[..plane].to_vec();
    for c in 1..channels {
        for (o, v) in out.iter_mut().zip(&chw[c * plane..(c + 1) * plane]) {
            *o += v;
        }
    }
    out
}

/// The size of a map shrunk so that its longer side is at most `max_side` (integer bins).
pub fn fit_side(h: usize, w: usize, max_side: usize) -> (usize, usize) {
    let longer = h.max(w);
    if longer <= max_side || max_side == 0 {
        return (h, w);
    }
    let factor = longer.div_ceil(max_side);
    (h.div_ceil(factor), w.div_ceil(factor))
}

/// The image average-pooled to g×g, channel-major (3·g·g values in [0, 1]).
pub fn image_grid(img: &RgbImage, g: usize) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut sums = vec![0.0f64; 3 * g * g];
    let mut counts = vec![0usize; g * g];
    for (x, y, px) in img.enumerate_pixels() {
        let cell = grid_bin(y as usize, h, g) * g + grid_bin(x as usize, w, g);
        counts[cell] += 1;
        for c in 0..3 {
            sums[c * g * g + cell] += px.0[c] as f64 / 255.0;
        }
    }
    sums.iter()
        .enumerate()
        .map(|(i, s)| {
            let n = counts[i % (g * g)];
            if n == 0 {
                0.0
            } else {
                (s / n as f64) as f32
            }
        })
        .collect()
}

/// A PNG of the image, shrunk so that its longer side is at most `side`.
pub fn thumbnail_png(img: &RgbImage, side: u32) -> Option<Vec<u8>> {
    let (w, h) = img.dimensions();
    let longer = w.max(h);
    let small = if longer > side {
        let nw = (w * side / longer).max(1);
        let nh = (h * side / longer).max(1);
        image::imageops::thumbnail(img, nw, nh)
    } else {
        img.clone()
    };
    let mut bytes = Vec::new();
    small
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_pool_preserves_total_and_bins() {
        let map: Vec<f32> = (0..20).map(|v| v as f32).collect(); // 4x5
        let pooled = sum_pool(&map, 4, 5, 2, 2);
        assert_eq!(pooled.iter().sum::<f32>(), map.iter().sum::<f32>());
        // rows 0-1, cols 0-2 (bins ⌊x·2/5⌋: 0,0,0,1,1)
        assert_eq!(pooled[0], 0.0 + 1.0 + 2.0 + 5.0 + 6.0 + 7.0);
        // more bins than pixels: still conserving
        let up = sum_pool(&map, 4, 5, 8, 8);
        assert_eq!(up.iter().sum::<f32>(), 190.0);
    }

    #[test]
    fn channel_sum_adds_planes() {
        let chw = vec![1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
        assert_eq!(channel_sum(&chw, 3, 1, 2), vec![111.0, 222.0]);
    }

    #[test]
    fn fit_side_shrinks_longer_side() {
        assert_eq!(fit_side(224, 224, 64), (56, 56));
        assert_eq!(fit_side(32, 32, 64), (32, 32));
        assert_eq!(fit_side(100, 50, 64), (50, 25));
    }
}

//! Heatmaps (diverging colour map centred at zero: red positive, blue negative) and inline
//! image data.

use base64::Engine;
use image::{Rgb, RgbImage};

/// Render an h×w map, scaled by its largest absolute value, upscaled by an integer factor so
/// that it is at least `min_side` pixels.
pub fn heatmap(map: &[f32], h: usize, w: usize, min_side: usize) -> RgbImage {
    let scale = map.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let factor = min_side.div_ceil(h.max(w).max(1)).max(1);
    RgbImage::from_fn((w * factor) as u32, (h * factor) as u32, |x, y| {
        let v = map[(y as usize / factor) * w + x as usize / factor];
        let t = if scale > 0.0 { v / scale } else { 0.0 };
        // 33 levels (16 per sign and zero): indistinguishable by eye, and PNG compresses the
        // flat runs to a third of the bytes.
        let t = (t * 16.0).round() / 16.0;
        // colorous' RED_BLUE runs red (0) → white (0.5) → blue (1).
        let c = colorous::RED_BLUE.eval_continuous((0.5 - 0.5 * t as f64).clamp(0.0, 1.0));
        Rgb([c.r, c.g, c.b])
    })
}

/// The page's pictures, each embedded once and referenced by key: a thumbnail per image
/// (shared by the classes it is explained for), a heatmap per (image, class).
#[derive(Default)]
pub struct Pictures {
    map: std::collections::BTreeMap<String, String>,
}

impl Pictures {
    /// The stored PNG thumbnail, re-encoded as JPEG (natural images: a third of the bytes).
    pub fn thumbnail(&mut self, rec: &spray_store::relevance::RelevanceRecord) -> Option<String> {
        let key = format!("t{}", rec.image_index);
        if !self.map.contains_key(&key) {
            let png = rec.thumbnail.as_deref()?;
            let img = image::load_from_memory(png).ok()?.to_rgb8();
            self.map.insert(key.clone(), jpeg_data_uri(&img, 85)?);
        }
        Some(key)
    }

    /// The stored map as a heatmap, sum-pooled to at most 32 px a side (the page scales it up),
    /// as a high-quality JPEG: relevance maps are noisy, and PNG would cost three times the bytes.
    pub fn heatmap(&mut self, rec: &spray_store::relevance::RelevanceRecord) -> Option<String> {
        let key = format!("h{}-{}", rec.class_index, rec.image_index);
        if !self.map.contains_key(&key) {
            let (h, w, m) = rec.map.as_ref()?;
            let (h, w) = (*h as usize, *w as usize);
            let factor = h.max(w).div_ceil(32).max(1);
            let (gh, gw) = (h.div_ceil(factor), w.div_ceil(factor));
            let mut pooled = vec![0.0f32; gh * gw];
            for y in 0..h {
                for x in 0..w {
                    pooled[(y / factor) * gw + x / factor] += m[y * w + x];
                }
            }
            self.map.insert(
                key.clone(),
                jpeg_data_uri(&heatmap(&pooled, gh, gw, 1), 92)?,
            );
        }
        Some(key)
    }

    pub fn into_map(self) -> std::collections::BTreeMap<String, String> {
        self.map
    }
}

fn jpeg_data_uri(img: &RgbImage, quality: u8) -> Option<String> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    ))
}

pub fn png_data_uri(img: &RgbImage) -> String {
    let mut bytes = Vec::new();
    if img
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .is_err()
    {
        return String::new();
    }
    png_bytes_uri(&bytes)
}

pub fn png_bytes_uri(bytes: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_colours_are_centred_at_zero() {
        let img = heatmap(&[1.0, 0.0, -1.0], 1, 3, 3);
        let pos = img.get_pixel(0, 0);
        let zero = img.get_pixel(1, 0);
        let neg = img.get_pixel(2, 0);
        assert!(pos.0[0] > pos.0[2], "positive is red: {pos:?}");
        assert!(neg.0[2] > neg.0[0], "negative is blue: {neg:?}");
        assert!(zero.0.iter().all(|&c| c > 230), "zero is white: {zero:?}");
    }
}

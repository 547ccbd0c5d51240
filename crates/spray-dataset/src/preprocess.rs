//! Image preprocessing as configured per model: resize, make square (the six strategies of
//! thesis §6.3.1), centre crop, pixel scale, mean/std and channel order.

use std::io::Read;
use std::path::Path;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use crate::DatasetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeSide {
    Shorter,
    Longer,
}

/// Scale the image so that one side has `size` pixels, keeping its aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    pub side: ResizeSide,
    pub size: u32,
}

/// How a non-square image becomes square (thesis §6.3.1, Fig 6.8–6.10).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SquareMode {
    /// Leave the aspect ratio alone (the final resize may distort).
    #[default]
    None,
    /// Pad by repeating the border pixels (the VOC pipeline of the thesis).
    Border,
    /// Pad by mirroring the image at its border.
    Mirror,
    /// Cut the largest centred square.
    Crop,
    /// Pad with uniform random pixels (seeded per image).
    Noise,
    /// Pad with one random colour per image (seeded per image).
    RandomColor,
    /// Pad with a fixed colour (`pad_color`).
    FixedColor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PixelScale {
    /// Pixels / 255, in [0, 1].
    #[default]
    Unit,
    /// Pixels as they are, in [0, 255].
    Byte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// Memory order of the model's image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TensorLayout {
    /// [N, C, H, W]: PyTorch exports, the ONNX model zoo.
    #[default]
    Nchw,
    /// [N, H, W, C]: Keras/TensorFlow models converted with tf2onnx.
    Nhwc,
}

/// The model's preprocessing. Steps run in this order: square, resize, centre crop, final
/// resize to `input_size` (only if the size still differs), scale, mean/std, channel order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// [height, width] of the model input.
    pub input_size: [u32; 2],
    #[serde(default)]
    pub resize: Option<Resize>,
    #[serde(default)]
    pub square: SquareMode,
    /// RGB padding colour for `square = "fixed-color"` (0–255).
    #[serde(default)]
    pub pad_color: [u8; 3],
    /// [height, width] of a centre crop after resizing.
    #[serde(default)]
    pub crop: Option<[u32; 2]>,
    #[serde(default)]
    pub scale: PixelScale,
    #[serde(default = "zeros")]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
    #[serde(default)]
    pub channels: ChannelOrder,
    /// How the batch is laid out for the model; relevance is read back in the same layout.
    #[serde(default)]
    pub layout: TensorLayout,
    /// Seed of the random square modes; each image draws from (seed, image index).
    #[serde(default)]
    pub seed: u64,
}

fn zeros() -> [f32; 3] {
    [0.0; 3]
}

fn ones() -> [f32; 3] {
    [1.0; 3]
}

/// A decoded, preprocessed image.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// CHW float tensor, ready for the model.
    pub tensor: Vec<f32>,
    /// The image as the model sees it, before scaling and normalisation (for thumbnails and
    /// the image-space baseline).
    pub rgb: RgbImage,
    /// The file's JPEG block statistics ([`crate::block_stats`]), taken from the decoded
    /// file before any crop or resize: `Some` where [`Preprocess::load`] prepared a JPEG file,
    /// `None` for any other format (its 8-pixel grid is content, not compression) and where
    /// an image was prepared from memory ([`Preprocess::apply`]).
    pub blocks: Option<[f32; 2]>,
    /// The quality a JPEG file was last saved at ([`crate::jpeg_quality`]); `None` for any
    /// other format, a JPEG without a quantisation table, and an image prepared from memory.
    pub jpeg_quality: Option<f32>,
}

/// Decode an image file to RGB. Zero-byte, truncated, non-image and unreadable files give an
/// error message meant for the errors table.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, String> {
    decode_file(path).map(|(rgb, _, _)| rgb)
}

/// [`decode_rgb`], with the file's format and, for a JPEG, the quality it was last saved at.
fn decode_file(path: &Path) -> Result<(RgbImage, image::ImageFormat, Option<f32>), String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("unreadable: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let format =
        image::guess_format(&bytes).map_err(|_| "not an image (unknown format)".to_string())?;
    // Decoders fill a cut-off image with grey and report success: check the structure first.
    match format {
        image::ImageFormat::Jpeg => crate::integrity::check_jpeg(&bytes),
        image::ImageFormat::Png => crate::integrity::check_png(&bytes),
        _ => Ok(()),
    }
    .map_err(|e| format!("cannot decode: {e}"))?;
    let img = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| format!("cannot decode {format:?}: {e}"))?;
    if img.width() == 0 || img.height() == 0 {
        return Err("image has no pixels".into());
    }
    let quality = match format {
        image::ImageFormat::Jpeg => crate::jpeg_quality(&bytes),
        _ => None,
    };
    Ok((img.to_rgb8(), format, quality))
}

/// SplitMix64: a tiny seeded generator, so random padding (and the verify stage's random
/// subsets) are the same for the same seed on every machine and in every shard.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

impl Preprocess {
    pub fn validate(&self) -> Result<(), DatasetError> {
        if self.input_size[0] == 0 || self.input_size[1] == 0 {
            return Err(DatasetError::Config("input_size must be positive".into()));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(DatasetError::Config(
                "std must be non-zero and finite".into(),
            ));
        }
        Ok(())
    }

    /// Decode and preprocess one file; `image_index` seeds the random square modes.
    /// With the file's block statistics and quality where it is a JPEG
    /// ([`PreparedImage::blocks`], [`PreparedImage::jpeg_quality`]).
    pub fn load(&self, path: &Path, image_index: u64) -> Result<PreparedImage, String> {
        let (rgb, format, jpeg_quality) = decode_file(path)?;
        let blocks = (format == image::ImageFormat::Jpeg).then(|| crate::block_stats(&rgb));
        Ok(PreparedImage {
            blocks,
            jpeg_quality,
            ..self.apply(rgb, image_index)
        })
    }

    pub fn apply(&self, image: RgbImage, image_index: u64) -> PreparedImage {
        let mut rng = SplitMix64(self.seed ^ image_index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut img = make_square(image, self.square, self.pad_color, &mut rng);
        if let Some(resize) = self.resize {
            let (w, h) = img.dimensions();
            let side = match resize.side {
                ResizeSide::Shorter => w.min(h),
                ResizeSide::Longer => w.max(h),
            };
            let ratio = resize.size as f64 / side as f64;
            let nw = ((w as f64 * ratio).round() as u32).max(1);
            let nh = ((h as f64 * ratio).round() as u32).max(1);
            if (nw, nh) != (w, h) {
                img = image::imageops::resize(&img, nw, nh, FilterType::Triangle);
            }
        }
        if let Some([ch, cw]) = self.crop {
            img = centre_crop(&img, cw, ch);
        }
        let [h, w] = self.input_size;
        if img.dimensions() != (w, h) {
            img = image::imageops::resize(&img, w, h, FilterType::Triangle);
        }
        let tensor = self.to_tensor(&img);
        PreparedImage {
            tensor,
            rgb: img,
            blocks: None,
            jpeg_quality: None,
        }
    }

    fn to_tensor(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let plane = (w * h) as usize;
        let mut out = vec![0.0f32; 3 * plane];
        let factor = match self.scale {
            PixelScale::Unit => 1.0 / 255.0,
            PixelScale::Byte => 1.0,
        };
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                let source = match self.channels {
                    ChannelOrder::Rgb => c,
                    ChannelOrder::Bgr => 2 - c,
                };
                let v = px.0[source] as f32 * factor;
                out[c * plane + i] = (v - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

fn centre_crop(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let cw = cw.min(w);
    let ch = ch.min(h);
    let x = (w - cw) / 2;
    let y = (h - ch) / 2;
    image::imageops::crop_imm(img, x, y, cw, ch).to_image()
}

/// Reflect index `i` into [0, n) without repeating the edge pixel (numpy's "reflect").
fn mirror(i: i64, n: i64) -> u32 {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as u32
}

fn make_square(
    img: RgbImage,
    mode: SquareMode,
    pad_color: [u8; 3],
    rng: &mut SplitMix64,
) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h || mode == SquareMode::None {
        return img;
    }
    if mode == SquareMode::Crop {
        let s = w.min(h);
        return centre_crop(&img, s, s);
    }
    let s = w.max(h);
    let x0 = ((s - w) / 2) as i64;
    let y0 = ((s - h) / 2) as i64;
    let random_color = [rng.byte(), rng.byte(), rng.byte()];
    let mut out = RgbImage::new(s, s);
    for y in 0..s {
        for x in 0..s {
            let (ix, iy) = (x as i64 - x0, y as i64 - y0);
            let inside = ix >= 0 && iy >= 0 && ix < w as i64 && iy < h as i64;
            let px = if inside {
                *img.get_pixel(ix as u32, iy as u32)
            } else {
                match mode {
                    SquareMode::Border => *img.get_pixel(
                        ix.clamp(0, w as i64 - 1) as u32,
                        iy.clamp(0, h as i64 - 1) as u32,
                    ),
                    SquareMode::Mirror => {
                        *img.get_pixel(mirror(ix, w as i64), mirror(iy, h as i64))
                    }
                    SquareMode::Noise => Rgb([rng.byte(), rng.byte(), rng.byte()]),
                    SquareMode::RandomColor => Rgb(random_color),
                    _ => Rgb(pad_color),
                }
            };
            out.put_pixel(x, y, px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Preprocess {
        Preprocess {
            input_size: [4, 4],
            resize: None,
            square: SquareMode::None,
            pad_color: [0, 0, 0],
            crop: None,
            scale: PixelScale::Unit,
            mean: [0.0; 3],
            std: [1.0; 3],
            channels: ChannelOrder::Rgb,
            layout: TensorLayout::Nchw,
            seed: 0,
        }
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([x as u8 * 10, y as u8 * 10, 7]))
    }

    #[test]
    fn border_padding_repeats_edge_pixels() {
        let img = make_square(
            gradient(4, 2),
            SquareMode::Border,
            [0; 3],
            &mut SplitMix64(0),
        );
        assert_eq!(img.dimensions(), (4, 4));
        // One row of padding above: a copy of row 0; below: a copy of row 1.
        assert_eq!(img.get_pixel(2, 0), &Rgb([20, 0, 7]));
        assert_eq!(img.get_pixel(2, 1), &Rgb([20, 0, 7]));
        assert_eq!(img.get_pixel(2, 3), &Rgb([20, 10, 7]));
    }

    #[test]
    fn mirror_padding_reflects() {
        let img = make_square(
            gradient(2, 6),
            SquareMode::Mirror,
            [0; 3],
            &mut SplitMix64(0),
        );
        assert_eq!(img.dimensions(), (6, 6));
        // Columns: pad 2 left → source x = mirror(-2), mirror(-1), 0, 1, mirror(2), mirror(3).
        let xs: Vec<u8> = (0..6).map(|x| img.get_pixel(x, 0).0[0] / 10).collect();
        assert_eq!(xs, vec![0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn crop_square_and_fixed_colour() {
        let img = make_square(gradient(6, 2), SquareMode::Crop, [0; 3], &mut SplitMix64(0));
        assert_eq!(img.dimensions(), (2, 2));
        assert_eq!(img.get_pixel(0, 0).0[0], 20);
        let img = make_square(
            gradient(2, 4),
            SquareMode::FixedColor,
            [1, 2, 3],
            &mut SplitMix64(0),
        );
        assert_eq!(img.get_pixel(0, 0), &Rgb([1, 2, 3]));
        assert_eq!(img.get_pixel(1, 0).0[2], 7);
    }

    #[test]
    fn random_modes_are_seeded_per_image() {
        let p = Preprocess {
            square: SquareMode::Noise,
            ..base()
        };
        let a = p.apply(gradient(4, 2), 5);
        let b = p.apply(gradient(4, 2), 5);
        let c = p.apply(gradient(4, 2), 6);
        assert_eq!(a.tensor, b.tensor);
        assert_ne!(a.tensor, c.tensor);
    }

    #[test]
    fn tensor_is_chw_normalised_and_reordered() {
        let p = Preprocess {
            input_size: [1, 2],
            scale: PixelScale::Byte,
            mean: [1.0, 2.0, 3.0],
            std: [2.0, 2.0, 2.0],
            channels: ChannelOrder::Bgr,
            ..base()
        };
        let img = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8, 10, 100]));
        let t = p.apply(img, 0).tensor;
        // channel 0 = blue (100), 1 = green (10), 2 = red (0, 1)
        assert_eq!(t, vec![49.5, 49.5, 4.0, 4.0, -1.5, -1.0]);
    }

    #[test]
    fn resize_shorter_side_then_crop() {
        let p = Preprocess {
            input_size: [4, 4],
            resize: Some(Resize {
                side: ResizeSide::Shorter,
                size: 4,
            }),
            crop: Some([4, 4]),
            ..base()
        };
        let out = p.apply(gradient(16, 8), 0);
        assert_eq!(out.rgb.dimensions(), (4, 4));
        assert_eq!(out.tensor.len(), 48);
    }
}

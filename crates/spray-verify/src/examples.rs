//! Before/after pictures of one occluded cluster member and one transplant recipient, for the
//! report: `<out>/verify/examples/<class>-<tested group>-<test>-<kind>.png`.

use std::path::Path;

use spray_dataset::{ChannelOrder, PixelScale, Preprocess};
use spray_store::{AnalysisGroup, EvidenceTest, GroupId};

use crate::evidence::PictureSink;

/// The four pictures of a tested cluster, in the order the report shows them.
pub const KINDS: [&str; 4] = ["original", "occluded", "recipient", "transplanted"];

/// Writes a tested group's pictures under `<out>/verify/examples/`
/// ([`spray_store::verify::example_path`]).
pub struct ExampleWriter<'a> {
    /// `<out>/verify`.
    pub dir: &'a Path,
    pub class_index: i32,
    pub preprocess: &'a Preprocess,
    /// Input height and width.
    pub size: [usize; 2],
}

impl PictureSink for ExampleWriter<'_> {
    fn write(
        &self,
        group: GroupId,
        test: EvidenceTest,
        pictures: &[Vec<f32>],
    ) -> crate::Result<Vec<String>> {
        let [h, w] = self.size;
        let mut files = Vec::new();
        for (kind, tensor) in KINDS.iter().zip(pictures) {
            let path = spray_store::verify::example_path(
                self.dir,
                AnalysisGroup::from_index(self.class_index),
                group,
                test,
                kind,
            );
            write_png(&path, &to_rgb(tensor, self.preprocess, h, w))?;
            if let Ok(rel) = path.strip_prefix(self.dir) {
                files.push(rel.display().to_string());
            }
        }
        Ok(files)
    }
}

/// A prepared CHW tensor back to the RGB image the model saw (undoing scale, mean/std and
/// channel order).
pub fn to_rgb(tensor: &[f32], pre: &Preprocess, h: usize, w: usize) -> image::RgbImage {
    let plane = h * w;
    let factor = match pre.scale {
        PixelScale::Unit => 255.0,
        PixelScale::Byte => 1.0,
    };
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        let mut px = [0u8; 3];
        for (c, out) in px.iter_mut().enumerate() {
            let source = match pre.channels {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let v = (tensor[source * plane + p] * pre.std[source] + pre.mean[source]) * factor;
            *out = v.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// Encode and write atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> Result<(), crate::VerifyError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| crate::VerifyError::Picture {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    spray_store::write_atomically(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_tensor_turns_back_into_its_pixels() {
        for channels in ["rgb", "bgr"] {
            let pre: Preprocess = serde_json::from_str(&format!(
                r#"{{"input_size": [3, 4], "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225], "channels": "{channels}"}}"#
            ))
            .unwrap();
            let img = image::RgbImage::from_fn(4, 3, |x, y| {
                image::Rgb([(x * 60) as u8, (y * 100) as u8, (x * y * 20 + 7) as u8])
            });
            let prepared = pre.apply(img.clone(), 0);
            assert_eq!(to_rgb(&prepared.tensor, &pre, 3, 4), img, "{channels}");
        }
    }
}

//! Before/after pictures of one occluded cluster member and one transplant recipient, for the
//! report: `<out>/verify/examples/<group>-k<cluster>-<kind>.png`.

use std::path::{Path, PathBuf};

use spray_dataset::{ChannelOrder, PixelScale, Preprocess};

/// The four pictures of a tested cluster, in the order the report shows them.
pub const KINDS: [&str; 4] = ["original", "occluded", "recipient", "transplanted"];

pub fn example_path(
    dir: &Path,
    class_index: i32,
    space: spray_store::FeatureSpace,
    level: spray_store::verify::ClusterLevel,
    cluster: i32,
    kind: &str,
) -> PathBuf {
    let tag = match level {
        spray_store::verify::ClusterLevel::Cluster => "k",
        spray_store::verify::ClusterLevel::Split => "s",
    };
    let space = match space {
        spray_store::FeatureSpace::Concept(i) => format!("c{i}"),
        spray_store::FeatureSpace::Colour => "col".to_string(),
        _ => String::new(),
    };
    dir.join("examples").join(format!(
        "{}-{space}{tag}{cluster}-{kind}.png",
        spray_store::analysis::group_name(class_index)
    ))
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
    .map_err(|e| crate::VerifyError::Config(format!("{}: {e}", path.display())))?;
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

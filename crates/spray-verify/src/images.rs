//! Where the stage's images come from: the dataset's files, decoded and prepared as the
//! relevance stage did (or under another square mode, for the padding table). Behind a trait
//! so the evidence logic can be tested on tensors made in memory.

use spray_dataset::{Dataset, PixelScale, Preprocess};

use crate::{Result, VerifyError};

/// A prepared CHW tensor per dataset image.
pub trait ImageSource {
    fn tensor(&self, image_index: usize) -> Result<Vec<f32>>;

    /// The tensors of several images, in order.
    fn tensors(&self, image_indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        image_indices.iter().map(|&i| self.tensor(i)).collect()
    }
}

/// The dataset's images under a preprocessing.
pub struct DatasetImages<'a> {
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
}

impl ImageSource for DatasetImages<'_> {
    fn tensor(&self, image_index: usize) -> Result<Vec<f32>> {
        let sample = self
            .dataset
            .samples
            .get(image_index)
            .ok_or(VerifyError::UnknownImage(image_index))?;
        self.preprocess
            .load(&sample.path, sample.index as u64)
            .map(|p| p.tensor)
            .map_err(|e| VerifyError::Decode {
                path: sample.path.display().to_string(),
                reason: e.to_string(),
            })
    }
}

/// Per tensor channel, the values a pixel can take (0 to full scale through the
/// preprocessing's scale, mean and std): colour transfers stay inside them.
pub fn pixel_bounds(pre: &Preprocess) -> [(f32, f32); 3] {
    let full = match pre.scale {
        PixelScale::Unit => 1.0,
        PixelScale::Byte => 255.0,
    };
    std::array::from_fn(|c| {
        let std = if pre.std[c] == 0.0 { 1.0 } else { pre.std[c] };
        let (a, b) = ((0.0 - pre.mean[c]) / std, (full - pre.mean[c]) / std);
        (a.min(b), a.max(b))
    })
}

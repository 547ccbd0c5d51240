//! Where the stage's images come from: the dataset's files, decoded and prepared as the
//! relevance stage did (or under another square mode, for the padding table). Behind a trait
//! so the evidence logic can be tested on tensors made in memory.

use image::RgbImage;
use spray_dataset::{decode_rgb, Dataset, PixelScale, Preprocess};

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
        let (rgb, index) = decode(self.dataset, image_index)?;
        Ok(self.preprocess.apply(rgb, index).tensor)
    }
}

/// Image `image_index` of the dataset decoded, with the index its preprocessing seeds by
/// (for a caller that prepares one decoded image several ways).
pub(crate) fn decode(dataset: &Dataset, image_index: usize) -> Result<(RgbImage, u64)> {
    let sample = dataset
        .samples
        .get(image_index)
        .ok_or(VerifyError::UnknownImage(image_index))?;
    let rgb = decode_rgb(&sample.path).map_err(|reason| VerifyError::Decode {
        path: sample.path.display().to_string(),
        reason,
    })?;
    Ok((rgb, sample.index as u64))
}

/// Another source's tensors, each decoded once and kept while they fit in `capacity` bytes.
/// Why: a class's tests decode the same images again and again (each group's donors and
/// controls, each test's recipients), and decoding a photograph and resizing it costs as much
/// as scoring it on a small model. One cache per class, so memory is bounded by what one
/// class's tests touch, and by `capacity`.
pub struct CachedImages<'a> {
    inner: &'a dyn ImageSource,
    capacity: usize,
    cache: std::cell::RefCell<(usize, std::collections::BTreeMap<usize, Vec<f32>>)>,
}

impl<'a> CachedImages<'a> {
    pub fn new(inner: &'a dyn ImageSource, capacity: usize) -> Self {
        CachedImages {
            inner,
            capacity,
            cache: Default::default(),
        }
    }
}

impl ImageSource for CachedImages<'_> {
    fn tensor(&self, image_index: usize) -> Result<Vec<f32>> {
        if let Some(t) = self.cache.borrow().1.get(&image_index) {
            return Ok(t.clone());
        }
        let t = self.inner.tensor(image_index)?;
        let mut cache = self.cache.borrow_mut();
        let bytes = t.len() * std::mem::size_of::<f32>();
        if cache.0 + bytes <= self.capacity {
            cache.0 += bytes;
            cache.1.insert(image_index, t.clone());
        }
        Ok(t)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its decodes.
    struct Counting(std::cell::Cell<usize>);
    impl ImageSource for Counting {
        fn tensor(&self, image_index: usize) -> Result<Vec<f32>> {
            self.0.set(self.0.get() + 1);
            Ok(vec![image_index as f32; 4])
        }
    }

    #[test]
    fn a_cached_image_is_decoded_once_while_it_fits() {
        let source = Counting(Default::default());
        // Room for two tensors of 16 bytes.
        let cached = CachedImages::new(&source, 32);
        for _ in 0..3 {
            assert_eq!(cached.tensors(&[0, 1, 2]).unwrap()[2], vec![2.0; 4]);
        }
        // 0 and 1 once; 2 did not fit and is decoded each time.
        assert_eq!(source.0.get(), 2 + 3);
    }
}

//! Where the stage's images come from: the dataset's files, decoded and prepared as the
//! relevance stage did (or under another square mode, for the padding table). Behind a trait
//! so the evidence logic can be tested on tensors made in memory.

use image::RgbImage;
use spray_dataset::{decode_rgb, Dataset, PixelScale, Preprocess};

use crate::perturb::ColourProfile;
use crate::{Result, VerifyError};

/// A prepared image's CHW tensor, shared rather than copied. Why: the stage's cache
/// (`CachedImages`) hands out the tensor it keeps, and each row of a class takes its donors'
/// and its control's tensors again (copying them was 9% of the stage's time on
/// held-resnet-n, benches/RESULTS.md).
pub type Tensor = std::sync::Arc<[f32]>;

/// A prepared CHW tensor per dataset image.
pub trait ImageSource {
    fn tensor(&self, image_index: usize) -> Result<Tensor>;

    /// The tensors of several images, in order.
    fn tensors(&self, image_indices: &[usize]) -> Result<Vec<Tensor>> {
        image_indices.iter().map(|&i| self.tensor(i)).collect()
    }
}

/// The dataset's images under a preprocessing.
pub struct DatasetImages<'a> {
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
}

impl ImageSource for DatasetImages<'_> {
    fn tensor(&self, image_index: usize) -> Result<Tensor> {
        let (rgb, index) = decode(self.dataset, image_index)?;
        Ok(self.preprocess.apply(rgb, index).tensor.into())
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

/// Another source's tensors, each decoded once and kept while they fit in `capacity` bytes;
/// when a new one does not fit, the least recently used make room. Why: the stage's tests
/// decode the same images again and again (each group's donors and controls, each test's
/// recipients, and every class's recipients are largely the same other classes' images), and
/// decoding a photograph and resizing it costs as much as scoring it on a small model. One
/// cache for the whole stage (one per class before: each class decoded its recipients again,
/// a tenth of the stage's own work on the realistic scenarios); memory is bounded by
/// `capacity`, and a dataset larger than that keeps what the current class touches.
pub struct CachedImages<'a> {
    inner: &'a (dyn ImageSource + Sync),
    capacity: usize,
    /// Shared by the stage's workers (`workers`); held only to look up and to keep, never
    /// while decoding.
    cache: std::sync::Mutex<Lru>,
}

/// The kept tensors by image index, each with the tick of its last use, and the indices by
/// that tick (oldest first).
#[derive(Default)]
struct Lru {
    bytes: usize,
    tick: u64,
    by_index: std::collections::BTreeMap<usize, (Tensor, u64)>,
    by_use: std::collections::BTreeMap<u64, usize>,
}

impl Lru {
    fn get(&mut self, image_index: usize) -> Option<Tensor> {
        self.tick += 1;
        let (t, used) = self.by_index.get_mut(&image_index)?;
        self.by_use.remove(used);
        *used = self.tick;
        self.by_use.insert(self.tick, image_index);
        Some(t.clone())
    }

    /// Keep `t`, dropping the least recently used while it does not fit (nothing when `t`
    /// alone is larger than `capacity`).
    fn insert(&mut self, image_index: usize, t: &Tensor, capacity: usize) {
        let bytes = std::mem::size_of_val(&**t);
        if bytes > capacity {
            return;
        }
        // Kept already (not asked for before it was taken again): the new tensor replaces it.
        if let Some((old, used)) = self.by_index.remove(&image_index) {
            self.by_use.remove(&used);
            self.bytes -= std::mem::size_of_val(&*old);
        }
        while self.bytes + bytes > capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((dropped, _)) = self.by_index.remove(&oldest) {
                self.bytes -= std::mem::size_of_val(&*dropped);
            }
        }
        self.tick += 1;
        self.bytes += bytes;
        self.by_index.insert(image_index, (t.clone(), self.tick));
        self.by_use.insert(self.tick, image_index);
    }
}

impl<'a> CachedImages<'a> {
    pub fn new(inner: &'a (dyn ImageSource + Sync), capacity: usize) -> Self {
        CachedImages {
            inner,
            capacity,
            cache: Default::default(),
        }
    }

    /// The kept tensors. Only `Lru`'s own bookkeeping runs under the lock, which does not
    /// panic part-way, so a poisoned lock still holds a whole cache and is used as it is.
    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ImageSource for CachedImages<'_> {
    fn tensor(&self, image_index: usize) -> Result<Tensor> {
        if let Some(t) = self.lru().get(image_index) {
            return Ok(t);
        }
        // Two workers that miss the same image both decode it; the second keeps its copy.
        let t = self.inner.tensor(image_index)?;
        self.lru().insert(image_index, &t, self.capacity);
        Ok(t)
    }
}

/// Per image, the colour profile of its tensor (`perturb::ColourProfile`), computed once.
/// Why: every pixel-side row of a class takes them of its donors and of the class's other
/// images, the same images row after row.
pub(crate) struct ColourStats {
    /// Per tensor channel, the values a pixel can take (`pixel_bounds`).
    bounds: [(f32, f32); 3],
    known: std::cell::RefCell<std::collections::BTreeMap<usize, ColourProfile>>,
}

impl ColourStats {
    pub(crate) fn new(bounds: [(f32, f32); 3]) -> Self {
        ColourStats {
            bounds,
            known: Default::default(),
        }
    }

    /// The profiles of `tensors`, which are images `image_indices` in order.
    pub(crate) fn of(&self, image_indices: &[usize], tensors: &[Tensor]) -> Vec<ColourProfile> {
        let mut known = self.known.borrow_mut();
        image_indices
            .iter()
            .zip(tensors)
            .map(|(&i, t)| {
                *known
                    .entry(i)
                    .or_insert_with(|| ColourProfile::of(t, &self.bounds))
            })
            .collect()
    }

    /// The profile of image `image_index`, its tensor decoded by `tensor` only where the
    /// profile is not known yet.
    pub(crate) fn profile(
        &self,
        image_index: usize,
        tensor: impl FnOnce() -> Result<Tensor>,
    ) -> Result<ColourProfile> {
        if let Some(known) = self.known.borrow().get(&image_index) {
            return Ok(*known);
        }
        let profile = ColourProfile::of(&tensor()?, &self.bounds);
        self.known.borrow_mut().insert(image_index, profile);
        Ok(profile)
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

/// Images in memory, for the tests of any evidence test.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// Prepared tensors, by image index.
    pub struct Images(pub Vec<Vec<f32>>);
    impl ImageSource for Images {
        fn tensor(&self, image_index: usize) -> Result<Tensor> {
            Ok(self.0[image_index].as_slice().into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its decodes.
    struct Counting(std::sync::atomic::AtomicUsize);
    impl ImageSource for Counting {
        fn tensor(&self, image_index: usize) -> Result<Tensor> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![image_index as f32; 4].into())
        }
    }
    impl Counting {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[test]
    fn a_cached_image_is_decoded_once_while_it_fits() {
        let source = Counting(Default::default());
        // Room for three tensors of 16 bytes.
        let cached = CachedImages::new(&source, 48);
        for _ in 0..3 {
            assert_eq!(
                cached.tensors(&[0, 1, 2]).unwrap()[2].to_vec(),
                vec![2.0; 4]
            );
        }
        assert_eq!(source.get(), 3, "each decoded once");
        // A fourth makes room by dropping the least recently used: 0 was used before 1 and 2.
        cached.tensors(&[1, 3]).unwrap();
        assert_eq!(source.get(), 4);
        cached.tensors(&[1, 2, 3]).unwrap();
        assert_eq!(source.get(), 4, "1, 2 and 3 kept");
        // A kept tensor is handed out shared, not copied.
        let (a, b) = (cached.tensor(2).unwrap(), cached.tensor(2).unwrap());
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(cached.tensor(0).unwrap().to_vec(), vec![0.0; 4]);
        assert_eq!(source.get(), 5, "0 was dropped");
        // Kept again under the same index: replaced, not counted twice.
        let mut lru = Lru::default();
        lru.insert(5, &Tensor::from([1.0; 4]), 32);
        lru.insert(5, &Tensor::from([2.0; 4]), 32);
        assert_eq!(
            (lru.bytes, lru.by_index.len(), lru.by_use.len()),
            (16, 1, 1)
        );
        assert_eq!(lru.get(5).map(|t| t.to_vec()), Some(vec![2.0; 4]));
        // A tensor larger than the whole capacity is never kept.
        let tiny = CachedImages::new(&source, 8);
        tiny.tensors(&[0, 0]).unwrap();
        assert_eq!(source.get(), 7);
    }

    #[test]
    fn colour_statistics_are_taken_once_per_image() {
        let stats = ColourStats::new([(0.0, 4.0); 3]);
        let t = vec![Tensor::from([0.0, 2.0, 1.0, 1.0, 4.0, 4.0])];
        // Pixels (0, 1, 4) and (2, 1, 4): chroma 4/4 and 3/4 of the range.
        assert_eq!(
            stats.of(&[7], &t),
            vec![ColourProfile {
                channels: [(1.0, 1.0), (1.0, 0.0), (4.0, 0.0)],
                chroma: 0.875,
            }]
        );
        // Image 7 again: what was taken the first time, whatever tensor comes with it.
        assert_eq!(
            stats.of(&[7], &[Tensor::from([0.0; 6])]),
            stats.of(&[7], &t)
        );
    }
}

//! Transforms a thread made lately, kept to be read again ([`Recent`]): the spectra of
//! tensors by their content, and the seeded noise planes whose phases the textures take.
//!
//! Why: the same images are transformed again and again. A class's first recipients receive
//! the spectrum transfer from every group it tests and from each group's controls, and each
//! time their own spectrum was taken afresh; recipient j's texture phases are the same noise
//! plane in every row. A value read back is the one the transform gave, so every result is the
//! same bits as without the cache. On held-resnet-128's verify stage 734 of the 1,613 transforms
//! asked for are read back (benches/RESULTS.md, stop 60).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use rustfft::num_complex::Complex;

/// The bytes of keys and values a thread keeps of each kind: some 110 tensors and their
/// spectra at 128 × 128, some 450 at 64 × 64 — a class's first recipients and its rows'
/// donors. On held-resnet-128, 32 MiB read back 604 of 1,613 transforms, 64 MiB 734, 128 MiB
/// 788, and with no bound 805.
const CAPACITY_BYTES: usize = 64 << 20;

/// Values by key, the least recently read dropped first once they hold more than
/// [`CAPACITY_BYTES`].
pub(super) struct Recent<K, V> {
    entries: VecDeque<(K, Rc<V>, usize)>,
    bytes: usize,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<K, V> Recent<K, V> {
    /// The value of the entry whose key `matches`, else `make`'s (its key, value and bytes),
    /// kept.
    pub(super) fn get_or_make(
        &mut self,
        matches: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V, usize),
    ) -> Rc<V> {
        if let Some(at) = self.entries.iter().position(|(k, _, _)| matches(k)) {
            let entry = self.entries.remove(at).expect("found above");
            let value = Rc::clone(&entry.1);
            self.entries.push_back(entry);
            return value;
        }
        let (key, value, bytes) = make();
        let value = Rc::new(value);
        self.entries.push_back((key, Rc::clone(&value), bytes));
        self.bytes += bytes;
        while self.bytes > CAPACITY_BYTES && self.entries.len() > 1 {
            if let Some((_, _, b)) = self.entries.pop_front() {
                self.bytes -= b;
            }
        }
        value
    }
}

/// A tensor as a key: its width, a hash of its bits (to pass over most entries at one
/// comparison) and the tensor itself (a hit is the same bits, never a collision).
struct TensorKey {
    width: usize,
    hash: u64,
    tensor: Vec<f32>,
}

impl TensorKey {
    /// The key of `tensor` at `width`, whose [`content_hash`] is `hash`.
    fn new(tensor: &[f32], hash: u64, width: usize) -> Self {
        TensorKey {
            width,
            hash,
            tensor: tensor.to_vec(),
        }
    }

    /// Whether this is the key of `tensor` (of hash `hash`) at `width`.
    fn is(&self, (tensor, hash, width): (&[f32], u64, usize)) -> bool {
        self.hash == hash && self.width == width && self.tensor.as_slice() == tensor
    }
}

/// FNV-1a over the values' bits, four lanes at a time so that the multiplications do not wait
/// on each other; the length folded in.
fn content_hash(tensor: &[f32]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    let mut lanes = [0xCBF2_9CE4_8422_2325u64 ^ tensor.len() as u64; 4];
    let chunks = tensor.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = (*lane ^ u64::from(v.to_bits())).wrapping_mul(PRIME);
        }
    }
    for (lane, v) in lanes.iter_mut().zip(tail) {
        *lane = (*lane ^ u64::from(v.to_bits())).wrapping_mul(PRIME);
    }
    lanes
        .iter()
        .fold(0u64, |h, &l| (h ^ l).wrapping_mul(PRIME).rotate_left(29))
}

/// Spectra of CHW tensors by content.
type KnownSpectra = Recent<TensorKey, Vec<Complex<f32>>>;
/// Noise planes' transforms by (width, height, seed).
type KnownNoise = Recent<(usize, usize, u64), Vec<Complex<f32>>>;

thread_local! {
    static SPECTRA: RefCell<KnownSpectra> = RefCell::new(Recent::default());
    static NOISE: RefCell<KnownNoise> = RefCell::new(Recent::default());
}

/// The spectrum of CHW `tensor` at `width` that this thread kept, else `transform`'s (kept).
pub(super) fn spectrum_of(
    tensor: &[f32],
    width: usize,
    transform: impl FnOnce() -> Vec<Complex<f32>>,
) -> Rc<Vec<Complex<f32>>> {
    let hash = content_hash(tensor);
    SPECTRA.with(|spectra| {
        spectra.borrow_mut().get_or_make(
            |key| key.is((tensor, hash, width)),
            || {
                let bytes = tensor.len() * (size_of::<f32>() + size_of::<Complex<f32>>());
                (TensorKey::new(tensor, hash, width), transform(), bytes)
            },
        )
    })
}

/// The transform of the noise plane (`width`, `height`, `seed`) that this thread kept, else
/// `transform`'s (kept).
pub(super) fn noise_of(
    (width, height, seed): (usize, usize, u64),
    transform: impl FnOnce() -> Vec<Complex<f32>>,
) -> Rc<Vec<Complex<f32>>> {
    NOISE.with(|noise| {
        noise.borrow_mut().get_or_make(
            |key| *key == (width, height, seed),
            || {
                let bytes = width * height * size_of::<Complex<f32>>();
                ((width, height, seed), transform(), bytes)
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_once_and_the_least_recently_read_goes_first() {
        let mut recent: Recent<u32, Vec<u8>> = Recent::default();
        let mut made = 0;
        let big = CAPACITY_BYTES / 2;
        for key in [1, 2, 1, 3, 1, 2] {
            recent.get_or_make(
                |k| *k == key,
                || {
                    made += 1;
                    (key, vec![key as u8], big)
                },
            );
        }
        // 1, 2 made; 1 read; 3 made (2 goes: 1 was read after it); 1 read; 2 made again.
        assert_eq!(made, 4);
        let keys: Vec<u32> = recent.entries.iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![1, 2]);
        assert!(recent.bytes <= CAPACITY_BYTES);
    }

    #[test]
    fn an_entry_larger_than_the_capacity_is_still_kept_alone() {
        let mut recent: Recent<u32, ()> = Recent::default();
        recent.get_or_make(|k| *k == 1, || (1, (), 2 * CAPACITY_BYTES));
        assert_eq!(recent.entries.len(), 1);
        let mut again = false;
        recent.get_or_make(
            |k| *k == 1,
            || {
                again = true;
                (1, (), 0)
            },
        );
        assert!(!again);
    }

    #[test]
    fn a_tensor_key_matches_the_same_bits_only() {
        let t = vec![0.5f32, -1.0, 2.0, 0.0, 3.5];
        let key = TensorKey::new(&t, content_hash(&t), 5);
        assert!(key.is((&t, content_hash(&t), 5)));
        assert!(!key.is((&t, content_hash(&t), 1)), "another width");
        let mut u = t.clone();
        u[4] = 3.5000002;
        assert!(!key.is((&u, content_hash(&u), 5)));
        // A hash of the bits, not of the values: −0 and 0 are two keys.
        assert_ne!(content_hash(&[0.0]), content_hash(&[-0.0]));
        assert_ne!(content_hash(&[1.0, 2.0]), content_hash(&[2.0, 1.0]));
    }
}

//! A class's recipients: the other classes' images its groups' transplants are given to, in
//! two parts — the first `transplant_images`, which every row is measured on, decoded up
//! front; the later ones up to `verdict_images`, decoded when a row whose verdict the first
//! left open goes on to them (`evidence::class_evidence`, `transplant::transplant_in_looks`).
//! Which images they are is `members::recipients`.

use std::cell::{OnceCell, RefCell};

use crate::images::{ImageSource, Tensor};
use crate::scorer::{predicted, Scorer};
use crate::Result;

/// Other classes' images, prepared once per class: every test's recipients, with their logits
/// before any change where the relevance stage stored them. One without is scored the first
/// time a test reaches it: most groups stop at their first look, and scoring every recipient
/// up front was a tenth of the stage. The first `transplant_images` are decoded up front;
/// those beyond them (`verdict_images`) the first time a row whose verdict is open goes on
/// to them (`Recipients::load_later`), for most classes never.
pub(crate) struct Recipients {
    first: Vec<Tensor>,
    /// The images of the recipients after the first, and their tensors once loaded.
    later: (Vec<usize>, OnceCell<Vec<Tensor>>),
    before: RefCell<Vec<Option<Vec<f32>>>>,
}

impl Recipients {
    /// The `first` recipients' tensors, the images of the `later` ones, and the logits known
    /// `before` of both (by position, the later ones after the first; `None`: to be scored).
    pub(crate) fn new(
        first: Vec<Tensor>,
        later: Vec<usize>,
        before: Vec<Option<Vec<f32>>>,
    ) -> Self {
        debug_assert_eq!(first.len() + later.len(), before.len());
        let before = RefCell::new(before);
        Recipients {
            first,
            later: (later, OnceCell::new()),
            before,
        }
    }

    /// Recipients already scored (`before`: each one's logits), with empty tensors.
    #[cfg(test)]
    pub(crate) fn scored(before: Vec<Vec<f32>>) -> Self {
        let tensors = vec![Tensor::from(Vec::new()); before.len()];
        Recipients::new(tensors, Vec::new(), before.into_iter().map(Some).collect())
    }

    /// How many every row is measured on (the first part).
    pub(crate) fn first_count(&self) -> usize {
        self.first.len()
    }

    /// How many there are in all, the later ones too.
    pub(crate) fn count(&self) -> usize {
        self.first.len() + self.later.0.len()
    }

    /// Decode the later recipients from `images`, once: before a row goes on to them.
    pub(crate) fn load_later(&self, images: &dyn ImageSource) -> Result<()> {
        if self.later.1.get().is_none() && !self.later.0.is_empty() {
            let tensors = images.tensors(&self.later.0)?;
            // Set once here; a second call finds it set.
            let _ = self.later.1.set(tensors);
        }
        Ok(())
    }

    /// Recipient `p`'s tensor (a later one must have been loaded: `load_later`).
    pub(crate) fn tensor(&self, p: usize) -> &Tensor {
        match p.checked_sub(self.first.len()) {
            None => &self.first[p],
            Some(l) => &self
                .later
                .1
                .get()
                .expect("the later recipients are loaded before they are measured")[l],
        }
    }

    /// Score the recipients at `positions` not scored yet, in position order.
    pub(crate) fn score(&self, scorer: &mut dyn Scorer, positions: &[usize]) -> Result<()> {
        let missing: Vec<usize> = positions
            .iter()
            .copied()
            .filter(|&p| self.before.borrow()[p].is_none())
            .collect();
        let tensors: Vec<Vec<f32>> = missing.iter().map(|&p| self.tensor(p).to_vec()).collect();
        let logits = scorer.logits(&tensors)?;
        let mut before = self.before.borrow_mut();
        for (p, l) in missing.into_iter().zip(logits) {
            before[p] = Some(l);
        }
        Ok(())
    }

    /// Recipient `p`'s logit of class `k` before any change, and its predicted class (it must
    /// have been scored: `score`).
    pub(crate) fn before(&self, p: usize, k: usize) -> (f32, usize) {
        let before = self.before.borrow();
        let logits = before[p]
            .as_deref()
            .expect("a measured recipient is scored first");
        (logits[k], predicted(logits))
    }
}

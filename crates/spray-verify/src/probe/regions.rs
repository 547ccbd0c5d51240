//! The carrier of the two region tests (`shared_region`, `member_region`): one pixel mask per
//! image. Occlusion fills it (`[verify] fill`, seeded by the member's position), a transplant
//! pastes the donor's masked pixels onto the recipient.

use super::{Carrier, Giving, Occluding};
use crate::perturb::{occlude, paste};

/// One pixel mask per image (true = changed), and the donors a transplant gives from.
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    pub masks: Vec<Vec<bool>>,
    /// The donor positions given from, round-robin; empty: every donor.
    pub donors: Vec<usize>,
}

impl Regions {
    /// Every donor gives, image k with `masks[k]`.
    pub fn new(masks: Vec<Vec<bool>>) -> Self {
        Regions {
            masks,
            donors: Vec::new(),
        }
    }

    /// Only the donors at `positions` give (none left out where it is empty).
    pub fn giving_from(self, positions: Vec<usize>) -> Self {
        Regions {
            donors: positions,
            ..self
        }
    }
}

impl Carrier for Regions {
    fn take_away(&self, k: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        let apply = at.apply;
        occlude(
            image,
            &self.masks[k],
            apply.width,
            apply.fill,
            apply.seed ^ at.rows[k] as u64,
        );
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let d = if self.donors.is_empty() {
            j % from.donors.len()
        } else {
            self.donors[j % self.donors.len()]
        };
        paste(recipient, &from.donors[d], &self.masks[d]);
    }

    /// Occlusion only: no donors.
    fn subset(&self, positions: &[usize]) -> Box<dyn Carrier> {
        Box::new(Regions::new(
            positions.iter().map(|&p| self.masks[p].clone()).collect(),
        ))
    }
}

/// The captions of a region test's pictures.
pub(super) const CAPTIONS: [&str; 4] = [
    "cluster member",
    "region filled",
    "other class",
    "region pasted in",
];

/// The sentence of a region test ([`super::Told::fill`]'s placeholders), with the words
/// for its control.
macro_rules! region_sentence {
    ($control:literal) => {
        concat!(
            "Pasting {group}'s region ({region}) onto {images} images of other classes turns \
             {flip} of them into “{class}” (logit {gain} on average; ",
            $control,
            ": {control}); filling that region in the cluster's own images lowers the logit by \
             {drop} (by {drop_rest} in the rest of the class)."
        )
    };
}
pub(super) use region_sentence;

//! Non-finite outputs. A NaN or ∞ in a sample's logits or relevance makes every number
//! derived from it meaningless (a NaN feature row turns a whole class's spectrum into NaN), so
//! such samples are detected here, per sample, and never passed on as results.

use crate::Explanation;

/// What is non-finite about one sample's explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite {
    /// Non-finite logits of the sample (out of `logits`).
    pub bad_logits: usize,
    pub logits: usize,
    /// Non-finite relevance values (out of `relevance`).
    pub bad_relevance: usize,
    pub relevance: usize,
}

impl NonFinite {
    /// Whether the forward pass itself failed (the logits), not only the LRP backward pass.
    pub fn in_logits(&self) -> bool {
        self.bad_logits > 0
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bad_logits > 0 {
            write!(
                f,
                "non-finite output: {} of {} logits are NaN or infinite",
                self.bad_logits, self.logits
            )
        } else {
            write!(
                f,
                "non-finite relevance: {} of {} values are NaN or infinite (the logits are finite)",
                self.bad_relevance, self.relevance
            )
        }
    }
}

/// Check one sample's logits and relevance; `None` when every value is finite.
pub fn check_sample(logits: &[f32], relevance: &[f32]) -> Option<NonFinite> {
    let bad = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count();
    let (bad_logits, bad_relevance) = (bad(logits), bad(relevance));
    (bad_logits + bad_relevance > 0).then_some(NonFinite {
        bad_logits,
        logits: logits.len(),
        bad_relevance,
        relevance: relevance.len(),
    })
}

impl Explanation {
    /// Per sample of the batch, what is non-finite (`None` for sound samples).
    pub fn non_finite(&self) -> Vec<Option<NonFinite>> {
        (0..self.logits.nrows())
            .map(|i| {
                let logits = self.logits.row(i).to_vec();
                // The concept relevance is relevance too: checked with the map.
                let concept = self.concept.as_ref().map(|c| c.row(i).to_vec());
                let relevance: Vec<f32> = self
                    .relevance
                    .index_axis(ndarray::Axis(0), i)
                    .iter()
                    .copied()
                    .chain(concept.into_iter().flatten())
                    .collect();
                check_sample(&logits, &relevance)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_samples_pass_and_bad_ones_are_counted() {
        assert_eq!(check_sample(&[1.0, -2.0], &[0.5, 0.0, 3.0]), None);
        let nan_logit = check_sample(&[f32::NAN, 1.0], &[0.0; 4]).unwrap();
        assert!(nan_logit.in_logits());
        assert_eq!(
            nan_logit.to_string(),
            "non-finite output: 1 of 2 logits are NaN or infinite"
        );
        let inf_rel = check_sample(&[1.0, 2.0], &[0.0, f32::INFINITY, f32::NAN]).unwrap();
        assert!(!inf_rel.in_logits());
        assert_eq!((inf_rel.bad_relevance, inf_rel.relevance), (2, 3));
        assert!(inf_rel.to_string().contains("the logits are finite"));
    }

    #[test]
    fn explanation_rows_are_checked_one_by_one() {
        let logits =
            ndarray::Array2::from_shape_vec((3, 2), vec![1.0, 0.0, f32::NAN, 0.0, 1.0, 1.0])
                .unwrap();
        let mut relevance = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[3, 1, 2, 2]));
        relevance[[2, 0, 1, 1]] = f32::INFINITY;
        let e = Explanation {
            logits,
            relevance,
            targets: ndarray::Array1::from(vec![0, 0, 0]),
            concept: None,
        };
        let flags = e.non_finite();
        assert!(flags[0].is_none());
        assert!(flags[1].unwrap().in_logits());
        assert_eq!(flags[2].unwrap().bad_relevance, 1);
        // A non-finite concept relevance makes its sample unusable too.
        let mut concept = ndarray::Array2::<f32>::zeros((3, 4));
        concept[[0, 3]] = f32::NAN;
        let e = Explanation {
            concept: Some(concept),
            ..e
        };
        assert_eq!(e.non_finite()[0].unwrap().bad_relevance, 1);
    }
}

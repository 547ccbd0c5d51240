//! What the stage asks of the model: logits for prepared tensors. Behind a trait so that the
//! evidence logic can be tested with a small model in memory, without ONNX Runtime.

use spray_dataset::TensorLayout;
use spray_engine::{Predictor, SessionConfig};
use spray_lrp::LrpModel;

use crate::{Result, VerifyError};

/// Prepared CHW tensors in, one row of pre-softmax logits out per tensor.
pub trait Scorer {
    fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>>;
    /// Tensors scored so far.
    fn images_scored(&self) -> usize;
}

/// The model's logits through ONNX Runtime, in batches: the compiled model's forward half
/// ([`LrpModel::forward_model`]: the relevance stage's logits, without its backward pass).
pub struct ForwardScorer {
    predictor: Predictor,
    /// Input height and width.
    size: [usize; 2],
    layout: TensorLayout,
    batch_size: usize,
    scored: usize,
}

impl ForwardScorer {
    pub fn new(
        model: &LrpModel,
        session: SessionConfig,
        size: [usize; 2],
        layout: TensorLayout,
        batch_size: usize,
    ) -> Result<Self> {
        let forward = spray_onnx::encode_model(&model.forward_model());
        Ok(ForwardScorer {
            predictor: Predictor::new(&forward, session)?,
            size,
            layout,
            batch_size: batch_size.max(1),
            scored: 0,
        })
    }
}

impl Scorer for ForwardScorer {
    fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let [h, w] = self.size;
        let mut out = Vec::with_capacity(tensors.len());
        for chunk in tensors.chunks(self.batch_size) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            let mut input = ndarray::ArrayD::from_shape_vec(vec![chunk.len(), 3, h, w], flat)
                .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
            if self.layout == TensorLayout::Nhwc {
                input = input
                    .permuted_axes(vec![0, 2, 3, 1])
                    .as_standard_layout()
                    .into_owned();
            }
            let logits = self.predictor.predict(input.view())?;
            let rows = logits
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
            out.extend(rows.rows().into_iter().map(|row| row.to_vec()));
            self.scored += chunk.len();
        }
        Ok(out)
    }

    fn images_scored(&self) -> usize {
        self.scored
    }
}

/// The index of the largest logit.
pub(crate) fn predicted(logits: &[f32]) -> usize {
    spray_engine::argmax(logits.iter().copied())
}

#[cfg(test)]
pub(crate) mod fake {
    //! A linear model over the flat tensor: logits = W x. Small enough to reason about by
    //! hand, which is what the evidence logic's tests need.
    use super::*;

    pub struct LinearModel {
        /// One row of weights per class.
        pub weights: Vec<Vec<f32>>,
        pub scored: usize,
    }

    impl Scorer for LinearModel {
        fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
            self.scored += tensors.len();
            Ok(tensors
                .iter()
                .map(|t| {
                    self.weights
                        .iter()
                        .map(|w| w.iter().zip(t).map(|(a, b)| a * b).sum())
                        .collect()
                })
                .collect())
        }

        fn images_scored(&self) -> usize {
            self.scored
        }
    }

    #[test]
    fn the_linear_model_is_w_times_x() {
        let mut m = LinearModel {
            weights: vec![vec![1.0, 0.0], vec![0.5, 2.0]],
            scored: 0,
        };
        assert_eq!(m.logits(&[vec![2.0, 1.0]]).unwrap(), vec![vec![2.0, 3.0]]);
        assert_eq!(m.images_scored(), 1);
        assert_eq!(predicted(&[0.1, 0.9, 0.2]), 1);
    }
}

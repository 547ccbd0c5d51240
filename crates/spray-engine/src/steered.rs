//! Inference with a concept layer steered ([`spray_lrp::SteeredModel`]): the logits after an
//! offset is added to the layer's activation, and the activation as it was.

use ndarray::{ArrayD, ArrayViewD};
use ort::session::Session;
use ort::value::TensorRef;
use spray_lrp::SteeredModel;

use crate::{session_from_bytes, EngineError, Result, SessionConfig};

/// What one steered batch gave.
#[derive(Debug, Clone)]
pub struct Steered {
    /// `[N, K]`, from the steered activation.
    pub logits: ArrayD<f32>,
    /// `[N, C, ...]`, the layer's activation before the offset.
    pub activation: ArrayD<f32>,
}

/// A session of a steered model.
pub struct SteeredPredictor {
    session: Session,
    names: SteeredModel,
    /// The activation's shape per sample (`[C, ...]`), known after the first run.
    sample_shape: Option<Vec<usize>>,
}

impl SteeredPredictor {
    pub fn new(model: &SteeredModel, config: SessionConfig) -> Result<Self> {
        let bytes = spray_onnx::encode_model(&model.model);
        let mut names = model.clone();
        // The names are all the predictor keeps; the graph lives in the session.
        names.model = Default::default();
        Ok(SteeredPredictor {
            session: session_from_bytes(&bytes, config)?,
            names,
            sample_shape: None,
        })
    }

    /// Run a batch with `offsets` added to the activation, flattened per row: `[N, D]` (one
    /// per sample) or `[1, D]` (one for all), D the activation's size per sample; `None`
    /// adds nothing.
    pub fn run(
        &mut self,
        input: ArrayViewD<'_, f32>,
        offsets: Option<ndarray::ArrayView2<'_, f32>>,
    ) -> Result<Steered> {
        let Some(offsets) = offsets else {
            return self.run_with(input, ndarray::ArrayD::zeros(vec![1]).view());
        };
        let sample = match &self.sample_shape {
            Some(s) => s.clone(),
            None => {
                let n = input.shape().first().copied().unwrap_or(0);
                let first = self.run_with(input.view(), ndarray::ArrayD::zeros(vec![1]).view())?;
                if n == 0 {
                    return Ok(first);
                }
                first.activation.shape()[1..].to_vec()
            }
        };
        let per: usize = sample.iter().product();
        if offsets.ncols() != per {
            return Err(EngineError::Input(format!(
                "an offset of {} values for an activation of shape {sample:?}",
                offsets.ncols()
            )));
        }
        let mut shape = vec![offsets.nrows()];
        shape.extend(&sample);
        let offsets = offsets
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(shape)
            .map_err(|e| EngineError::Input(format!("offset: {e}")))?;
        self.run_with(input, offsets.view())
    }

    fn run_with(
        &mut self,
        input: ArrayViewD<'_, f32>,
        offset: ArrayViewD<'_, f32>,
    ) -> Result<Steered> {
        let input = input.as_standard_layout();
        let offset = offset.as_standard_layout();
        let outputs = self.session.run(ort::inputs![
            self.names.input.as_str() => TensorRef::from_array_view(input.view())?,
            self.names.offset.as_str() => TensorRef::from_array_view(offset.view())?,
        ])?;
        let take = |name: &str| -> Result<ArrayD<f32>> {
            Ok(outputs[name].try_extract_array::<f32>()?.to_owned())
        };
        let logits = take(&self.names.logits)?;
        if logits.ndim() != 2 {
            return Err(EngineError::Input(format!(
                "the steered model returned logits of shape {:?}",
                logits.shape()
            )));
        }
        let activation = take(&self.names.activation)?;
        if activation.ndim() >= 1 {
            self.sample_shape = Some(activation.shape()[1..].to_vec());
        }
        Ok(Steered { logits, activation })
    }
}

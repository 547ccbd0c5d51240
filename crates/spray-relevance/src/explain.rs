//! One decoded batch through the LRP model: the (image, class) requests it makes, the input
//! tensors, the model's health on the first batch, and the rows of the part.

use spray_dataset::{PreparedImage, Sample, TensorLayout};
use spray_engine::{LrpEngine, NonFinite};
use spray_store::relevance::ErrorRecord;

use crate::parts::PartRows;
use crate::pipeline::Decoded;
use crate::record::relevance_record;
use crate::{RelevanceError, RelevanceJob, Result, TargetMode};

/// What the process has seen of the model's outputs so far.
#[derive(Default)]
pub(crate) struct BatchHealth {
    /// Samples explained (sound or not) and, of those, samples with non-finite logits.
    explained: usize,
    non_finite_logits: usize,
}

impl BatchHealth {
    /// Count one model call's samples; after the first call, refuse a model whose logits were
    /// not finite for any of them.
    fn count(
        &mut self,
        job: &RelevanceJob<'_>,
        samples: usize,
        non_finite: &[Option<NonFinite>],
    ) -> Result<()> {
        let first_batch = self.explained == 0;
        self.explained += samples;
        self.non_finite_logits += non_finite
            .iter()
            .filter(|f| f.is_some_and(|f| f.in_logits()))
            .count();
        if first_batch {
            refuse_broken_model(job, self)?;
        }
        Ok(())
    }
}

/// A model whose logits are NaN or ∞ for a whole first batch is broken, not its inputs: stop
/// before anything is written, naming the constants that can explain it.
fn refuse_broken_model(job: &RelevanceJob<'_>, health: &BatchHealth) -> Result<()> {
    if health.explained == 0 || health.non_finite_logits < health.explained {
        return Ok(());
    }
    let model = job.model.graph().map_err(RelevanceError::LoadModel)?;
    let suspects: Vec<String> = model
        .model
        .graph
        .as_ref()
        .map(spray_onnx::non_finite_constants)
        .unwrap_or_default()
        .iter()
        .take(5)
        .map(|c| c.to_string())
        .collect();
    Err(RelevanceError::NonFinite(format!(
        "the model's logits are NaN or infinite for all {} samples of the first batch, so \
         nothing it explains could be used; stopping before any relevance is written. {}",
        health.explained,
        if suspects.is_empty() {
            "No weight is NaN or infinite: check the model with plain inference (onnxruntime) \
             on a few preprocessed images, and the preprocessing under [model]."
                .to_owned()
        } else {
            format!("Constants with non-finite values: {}.", suspects.join("; "))
        }
    )))
}

/// One explanation to compute: a decoded image and the class to explain it for (negative:
/// the predicted class).
pub(crate) struct Request<'a> {
    pub sample: &'a Sample,
    pub image: &'a PreparedImage,
    pub target: i64,
}

/// The model's input size `(h, w)` as [model] prepares it.
pub(crate) fn image_size(job: &RelevanceJob<'_>) -> (usize, usize) {
    let [h, w] = job.preprocess.input_size;
    (h as usize, w as usize)
}

/// Explain the decoded images of one batch for their targets; broken images and samples whose
/// logits or relevance are not finite become errors.
pub(crate) fn explain_batch(
    job: &RelevanceJob<'_>,
    engine: &mut LrpEngine,
    images: Vec<Decoded>,
    rows: &mut PartRows,
    health: &mut BatchHealth,
) -> Result<()> {
    let requests = requests(job, &images, &mut rows.errors);
    for chunk in requests.chunks(job.settings.batch_size) {
        explain_chunk(job, engine, chunk, rows, health)?;
    }
    Ok(())
}

/// The requests of a batch: per decoded image one per selected label, or one for the
/// prediction; an image that could not be decoded becomes an error row.
fn requests<'a>(
    job: &'a RelevanceJob<'_>,
    images: &'a [Decoded],
    errors: &mut Vec<ErrorRecord>,
) -> Vec<Request<'a>> {
    let mut requests = Vec::new();
    for (i, image) in images {
        let sample = &job.dataset.samples[*i];
        match image {
            Err(reason) => errors.push(error_record(sample, reason.clone())),
            Ok(image) => match job.settings.target {
                TargetMode::Predicted => requests.push(Request {
                    sample,
                    image,
                    target: -1,
                }),
                TargetMode::Label => {
                    for &t in &sample.targets {
                        requests.push(Request {
                            sample,
                            image,
                            target: t as i64,
                        });
                    }
                }
            },
        }
    }
    requests
}

fn error_record(sample: &Sample, reason: String) -> ErrorRecord {
    ErrorRecord {
        image_index: sample.index as i64,
        sample_id: sample.sample_id.clone(),
        path: sample.path.display().to_string(),
        reason,
    }
}

/// One model call: at most `batch_size` requests.
fn explain_chunk(
    job: &RelevanceJob<'_>,
    engine: &mut LrpEngine,
    chunk: &[Request<'_>],
    rows: &mut PartRows,
    health: &mut BatchHealth,
) -> Result<()> {
    let input = batch_input(job, chunk)?;
    let targets: Vec<i64> = chunk.iter().map(|r| r.target).collect();
    let explanation = engine.explain(input.view(), &targets)?;
    let non_finite = explanation.non_finite();
    health.count(job, chunk.len(), &non_finite)?;
    // Everything downstream (channel sums, pooling) reads [N, C, H, W].
    let relevance = if job.preprocess.layout == TensorLayout::Nhwc {
        explanation.relevance.view().permuted_axes(vec![0, 3, 1, 2])
    } else {
        explanation.relevance.view()
    };
    let relevance = relevance.as_standard_layout();
    let relevance = relevance
        .as_slice()
        .expect("an array in standard layout is one contiguous slice");
    let (h, w) = image_size(job);
    let plane = 3 * h * w;
    for (k, request) in chunk.iter().enumerate() {
        if let Some(problem) = non_finite[k] {
            // One error row per image: an image explained for several labels fails once.
            let sample = request.sample;
            if rows
                .errors
                .last()
                .is_none_or(|e| e.image_index != sample.index as i64)
            {
                rows.errors.push(error_record(sample, problem.to_string()));
            }
            continue;
        }
        let r = &relevance[k * plane..(k + 1) * plane];
        rows.records
            .push(relevance_record(job, request, &explanation, k, r)?);
    }
    Ok(())
}

/// The requests' images as one input batch in the model's layout.
fn batch_input(job: &RelevanceJob<'_>, chunk: &[Request<'_>]) -> Result<ndarray::ArrayD<f32>> {
    let (h, w) = image_size(job);
    let mut input = Vec::with_capacity(chunk.len() * 3 * h * w);
    for request in chunk {
        input.extend_from_slice(&request.image.tensor);
    }
    let input = ndarray::ArrayD::from_shape_vec(vec![chunk.len(), 3, h, w], input)
        .map_err(RelevanceError::Batch)?;
    Ok(match job.preprocess.layout {
        TensorLayout::Nhwc => input
            .permuted_axes(vec![0, 2, 3, 1])
            .as_standard_layout()
            .into_owned(),
        TensorLayout::Nchw => input,
    })
}

//! The stage driver: settings checked, the folder claimed, the shard's remaining parts found,
//! the model's input checked against the preprocessing, then the pipeline over those parts.

use std::borrow::Cow;
use std::time::Instant;

use spray_dataset::TensorLayout;
use spray_engine::{LrpEngine, SessionConfig};
use spray_store::relevance::part_path;

use crate::parts::{self, Parts};
use crate::pipeline::explain_parts;
use crate::{RelevanceError, RelevanceJob, RelevanceSummary, Result};

/// Run the stage for `job.shard`, skipping finished parts.
pub fn run(job: &RelevanceJob<'_>) -> Result<RelevanceSummary> {
    job.settings.validate()?;
    let started = Instant::now();
    let parts = Parts::of(job);
    parts::claim_folder(job, parts)?;

    let mine: Vec<usize> = (0..parts.count()).filter(|&p| job.shard.owns(p)).collect();
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&p| !part_path(&job.dir, p).is_file())
        .collect();
    let mut summary = RelevanceSummary {
        parts_total: mine.len(),
        parts_done_before: mine.len() - todo.len(),
        ..Default::default()
    };
    if todo.is_empty() {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let image_count: usize = todo.iter().map(|&p| parts.samples(p).len()).sum();
    tracing::info!(
        "relevance: shard {}: {} of {} parts to do ({image_count} images)",
        job.shard,
        todo.len(),
        mine.len()
    );

    check_model_input(job)?;
    let config = SessionConfig {
        device: job.device,
        threads: job.threads,
    };
    let cache = job.engine_cache.as_ref();
    let kept = match cache {
        Some(cache) => LrpEngine::from_cache(cache, config)?,
        None => None,
    };
    let mut engine = match kept {
        Some(engine) => engine,
        None => match job.model.graph().map_err(RelevanceError::LoadModel)? {
            Cow::Borrowed(model) => LrpEngine::new_cached(model, config, cache)?,
            // Loaded for this engine only: dropped before ONNX Runtime copies it.
            Cow::Owned(model) => LrpEngine::from_model_cached(model, config, cache)?,
        },
    };
    let bar = progress_bar(job.progress, image_count);
    let result = explain_parts(job, &mut engine, parts, &todo, &bar, &mut summary);
    bar.finish_and_clear();
    result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn progress_bar(shown: bool, images: usize) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(images as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} relevance [{elapsed_precise}] {bar:30} {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The batch this stage will build ([N, 3, H, W] or [N, H, W, 3]) must fit the model's declared
/// input; a mismatch is reported before any image is decoded, with the fix when it is the layout.
fn check_model_input(job: &RelevanceJob<'_>) -> Result<()> {
    let declared = &job.model.signature().input_shape;
    if declared.len() != 4 {
        return Ok(());
    }
    let [height, width] = job.preprocess.input_size;
    let [h, w] = [height, width].map(i64::from);
    let fits = |dims: [i64; 3]| {
        declared[1..]
            .iter()
            .zip(dims)
            .all(|(d, want)| d.is_none_or(|d| d == want))
    };
    let (nchw, nhwc) = (fits([3, h, w]), fits([h, w, 3]));
    let (ok, other_layout_fits) = match job.preprocess.layout {
        TensorLayout::Nchw => (nchw, nhwc),
        TensorLayout::Nhwc => (nhwc, nchw),
    };
    if ok {
        return Ok(());
    }
    Err(RelevanceError::InputMismatch {
        declared: declared.clone(),
        layout: job.preprocess.layout,
        height,
        width,
        other_layout_fits,
    })
}

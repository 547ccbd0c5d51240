//! The decode → explain pipeline: a producer thread decodes each batch on rayon's pool, one
//! batch ahead of ONNX Runtime, through a bounded channel; the consumer explains the batches
//! and writes each part when its last batch is done. Memory holds at most a few batches plus
//! one part's rows.

use std::sync::mpsc;

use rayon::prelude::*;
use spray_dataset::PreparedImage;
use spray_engine::LrpEngine;

use crate::explain::{explain_batch, BatchHealth};
use crate::parts::{PartRows, Parts};
use crate::{RelevanceJob, RelevanceSummary, Result};

/// A decoded image (or why it could not be decoded), by sample index.
pub(crate) type Decoded = (usize, std::result::Result<PreparedImage, String>);

struct DecodedBatch {
    part: usize,
    images: Vec<Decoded>,
    last_in_part: bool,
}

/// Decode, explain and write the parts in `todo`, counting the work in `summary`.
pub(crate) fn explain_parts(
    job: &RelevanceJob<'_>,
    engine: &mut LrpEngine,
    parts: Parts,
    todo: &[usize],
    bar: &indicatif::ProgressBar,
    summary: &mut RelevanceSummary,
) -> Result<()> {
    let (sender, receiver) = mpsc::sync_channel::<DecodedBatch>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || decode_parts(job, parts, todo, &sender));
        explain_and_write(job, engine, receiver, bar, summary)
    })
}

/// The producer: every part's images in batches of `batch_size`, decoded in parallel. Stops
/// when the consumer has stopped (on an error).
fn decode_parts(
    job: &RelevanceJob<'_>,
    parts: Parts,
    todo: &[usize],
    sender: &mpsc::SyncSender<DecodedBatch>,
) {
    let samples = &job.dataset.samples;
    let batch_size = job.settings.batch_size;
    for &part in todo {
        let range = parts.samples(part);
        let mut batch_start = range.start;
        while batch_start < range.end {
            let batch_end = (batch_start + batch_size).min(range.end);
            let images: Vec<_> = (batch_start..batch_end)
                .into_par_iter()
                .map(|i| {
                    let sample = &samples[i];
                    (i, job.preprocess.load(&sample.path, sample.index as u64))
                })
                .collect();
            let message = DecodedBatch {
                part,
                images,
                last_in_part: batch_end == range.end,
            };
            if sender.send(message).is_err() {
                return;
            }
            batch_start = batch_end;
        }
    }
}

/// The consumer: explain each batch into the current part's rows; write the part after its
/// last batch.
fn explain_and_write(
    job: &RelevanceJob<'_>,
    engine: &mut LrpEngine,
    receiver: mpsc::Receiver<DecodedBatch>,
    bar: &indicatif::ProgressBar,
    summary: &mut RelevanceSummary,
) -> Result<()> {
    let mut rows = PartRows::default();
    let mut health = BatchHealth::default();
    for batch in receiver {
        bar.inc(batch.images.len() as u64);
        summary.images += batch.images.len();
        explain_batch(job, engine, batch.images, &mut rows, &mut health)?;
        if batch.last_in_part {
            rows.write(job, batch.part)?;
            summary.rows += rows.records.len();
            summary.errors += rows.errors.len();
            summary.parts_written += 1;
            rows.clear();
        }
    }
    Ok(())
}

//! One explained sample as the stage stores it: the [`RelevanceRecord`] with its pooled maps,
//! image columns and concept relevance.

use spray_engine::Explanation;
use spray_store::relevance::RelevanceRecord;

use crate::explain::{image_size, Request};
use crate::maps::{self, channel_sum, image_grid, sum_pool};
use crate::{RelevanceError, RelevanceJob, Result};

/// The record of request `k` of a model call, whose relevance (CHW) is `r`.
pub(crate) fn relevance_record(
    job: &RelevanceJob<'_>,
    request: &Request<'_>,
    explanation: &Explanation,
    k: usize,
    r: &[f32],
) -> Result<RelevanceRecord> {
    let sample = request.sample;
    let classes = explanation.logits.shape()[1];
    let class = explanation.targets[k];
    if class < 0 || class as usize >= classes {
        return Err(RelevanceError::TargetOutOfRange {
            sample_id: sample.sample_id.clone(),
            class,
            classes,
        });
    }
    let logits = explanation.logits.row(k);
    let target_logit = logits[class as usize];
    let predicted = spray_engine::argmax(logits.iter().copied()) as i32;
    let (h, w) = image_size(job);
    let map = channel_sum(r, 3, h, w);
    let total: f32 = map.iter().map(|&v| v as f64).sum::<f64>() as f32;
    let grids = job
        .settings
        .grids
        .iter()
        .map(|&g| sum_pool(&map, h, w, g, g))
        .collect();
    let stored_map = job.settings.store_map.then(|| {
        let (mh, mw) = maps::fit_side(h, w, job.settings.map_max_side);
        (mh as i32, mw as i32, sum_pool(&map, h, w, mh, mw))
    });
    let images = ImageColumns::of(job, request);
    let concept = concept_row(job, explanation, k)?;
    Ok(RelevanceRecord {
        image_index: sample.index as i64,
        sample_id: sample.sample_id.clone(),
        path: sample.path.display().to_string(),
        class_index: class as i32,
        class_name: job.dataset.class_name(class as i32),
        labels: sample.labels.clone(),
        target_logit,
        predicted_class: predicted,
        relevance_sum: total,
        conservation_error: (total - target_logit).abs() / target_logit.abs().max(1e-12),
        grids,
        map: stored_map,
        image_grids: images.grids,
        thumbnail: images.thumbnail,
        concept,
        colour: images.colour,
        compression: images.compression,
        logits: Some(logits.to_vec()),
    })
}

/// The columns taken from the image itself (with `store_images`; empty otherwise).
struct ImageColumns {
    grids: Vec<Vec<f32>>,
    thumbnail: Option<Vec<u8>>,
    colour: Option<Vec<f32>>,
    compression: Option<Vec<f32>>,
}

impl ImageColumns {
    fn of(job: &RelevanceJob<'_>, request: &Request<'_>) -> Self {
        if !job.settings.store_images {
            return ImageColumns {
                grids: Vec::new(),
                thumbnail: None,
                colour: None,
                compression: None,
            };
        }
        let rgb = &request.image.rgb;
        ImageColumns {
            grids: job
                .settings
                .grids
                .iter()
                .map(|&g| image_grid(rgb, g))
                .collect(),
            thumbnail: maps::thumbnail_png(rgb, job.settings.thumbnail_side),
            colour: Some(spray_store::relevance::colour_stats(rgb.as_raw())),
            // A file that is not a JPEG has no compression blocks: zero, as for a JPEG without
            // them; and no quantisation: quality 100, as for a JPEG whose table was unread.
            compression: Some({
                let [rows, columns] = request.image.blocks.unwrap_or_default();
                vec![rows, columns, request.image.jpeg_quality.unwrap_or(100.0)]
            }),
        }
    }
}

/// Request `k`'s per-channel concept relevance, when the model has that output; its width must
/// be the concept layers' channel count.
fn concept_row(
    job: &RelevanceJob<'_>,
    explanation: &Explanation,
    k: usize,
) -> Result<Option<Vec<f32>>> {
    let Some(c) = &explanation.concept else {
        return Ok(None);
    };
    let row = c.row(k).to_vec();
    let want = job.model.signature().concept.as_ref().map(|c| c.channels());
    if Some(row.len()) != want {
        return Err(RelevanceError::ConceptChannels {
            got: row.len(),
            expected: want.unwrap_or(0),
        });
    }
    Ok(Some(row))
}

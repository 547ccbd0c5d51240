//! Stage 1: relevance maps for a whole dataset, written as a Parquet dataset.
//!
//! The dataset's images are cut into fixed *parts* (`part_size` consecutive images). A part is
//! the unit of work, of sharding (`--shard i/n` takes the parts p with p mod n = i) and of
//! resumption (a part whose file exists is done). Part boundaries depend only on the dataset
//! and `part_size`, so any sharding writes the same files as one process.
//!
//! Decoding runs on rayon's pool in a producer thread, one batch ahead of ONNX Runtime,
//! through a bounded channel: memory holds at most a few batches plus one part's rows.

mod maps;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;
use spray_dataset::{Dataset, PreparedImage, Preprocess, Sample, TensorLayout};
use spray_engine::{Device, LrpEngine, SessionConfig};
use spray_lrp::LrpModel;
pub use spray_store::relevance::{
    errors_path, finished_parts, manifest_path, part_path, read_manifest, RelevanceManifest,
};
use spray_store::relevance::{ErrorRecord, RelevanceLayout, RelevanceRecord};
use spray_store::Fingerprint;

pub use maps::{channel_sum, image_grid, sum_pool};

#[derive(Debug, thiserror::Error)]
pub enum RelevanceError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error(transparent)]
    Engine(#[from] spray_engine::EngineError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Incomplete(String),
    /// The model computes NaN or ∞ for everything it is given: nothing it explains can be used.
    #[error("{0}")]
    NonFinite(String),
}

pub type Result<T, E = RelevanceError> = std::result::Result<T, E>;

/// Which class each image is explained for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// One map per (image, selected ground-truth label).
    #[default]
    Label,
    /// One map per image, for the predicted class.
    Predicted,
}

pub use spray_store::Shard;

/// Settings of the relevance stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelevanceSettings {
    /// Which class to explain. In a pipeline file this is `[lrp] target`; it is part of the
    /// settings (and so of the fingerprint) but not a key of `[relevance]`.
    #[serde(default, skip_deserializing)]
    pub target: TargetMode,
    /// Grid sizes of the stored sum-pooled maps.
    #[serde(default = "default_grids")]
    pub grids: Vec<usize>,
    /// Store the channel-summed map, sum-pooled to at most `map_max_side` (for heatmaps).
    #[serde(default = "yes")]
    pub store_map: bool,
    #[serde(default = "default_map_side")]
    pub map_max_side: usize,
    /// Store pooled inputs and thumbnails (image-space baseline, report thumbnails).
    #[serde(default = "yes")]
    pub store_images: bool,
    #[serde(default = "default_thumbnail")]
    pub thumbnail_side: u32,
    /// Images per part file.
    #[serde(default = "default_part_size")]
    pub part_size: usize,
    /// Samples per ONNX Runtime call.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_grids() -> Vec<usize> {
    vec![20]
}
fn yes() -> bool {
    true
}
fn default_map_side() -> usize {
    64
}
fn default_thumbnail() -> u32 {
    64
}
fn default_part_size() -> usize {
    256
}
fn default_batch() -> usize {
    16
}

impl Default for RelevanceSettings {
    fn default() -> Self {
        RelevanceSettings {
            target: TargetMode::Label,
            grids: default_grids(),
            store_map: true,
            map_max_side: default_map_side(),
            store_images: true,
            thumbnail_side: default_thumbnail(),
            part_size: default_part_size(),
            batch_size: default_batch(),
        }
    }
}

impl RelevanceSettings {
    pub fn layout(&self) -> RelevanceLayout {
        RelevanceLayout {
            grids: self.grids.clone(),
            store_map: self.store_map,
            store_images: self.store_images,
            concept_layers: Vec::new(),
            // With the stored images: the same decoded input, six numbers more a row.
            colour_stats: self.store_images,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.grids.is_empty() || self.grids.contains(&0) {
            return Err(RelevanceError::Config(
                "grids must list at least one positive grid size".into(),
            ));
        }
        if self.part_size == 0 || self.batch_size == 0 {
            return Err(RelevanceError::Config(
                "part_size and batch_size must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What one call did.
#[derive(Debug, Clone, Default)]
pub struct RelevanceSummary {
    pub parts_total: usize,
    pub parts_done_before: usize,
    pub parts_written: usize,
    pub images: usize,
    pub rows: usize,
    pub errors: usize,
    pub seconds: f64,
}

impl RelevanceSummary {
    pub fn images_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.images as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Everything the stage needs.
pub struct RelevanceJob<'a> {
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
    /// The compiled LRP model (compiling first means an unsupported op is reported before any
    /// image is read).
    pub model: &'a LrpModel,
    /// Hash of the source model and rule choice, part of the fingerprint.
    pub model_fingerprint: String,
    pub settings: &'a RelevanceSettings,
    pub device: Device,
    pub threads: usize,
    /// The stage's folder, `<out>/relevance`.
    pub dir: PathBuf,
    pub shard: Shard,
    pub progress: bool,
}

impl RelevanceJob<'_> {
    /// The columns this job writes: the settings' grids and images, and the concept column
    /// when the compiled model has a concept output.
    pub fn layout(&self) -> RelevanceLayout {
        RelevanceLayout {
            concept_layers: self
                .model
                .signature
                .concept
                .iter()
                .flat_map(|c| &c.layers)
                .map(|l| spray_store::relevance::ConceptLayerInfo {
                    node: l.node.clone(),
                    channels: l.channels,
                })
                .collect(),
            ..self.settings.layout()
        }
    }
}

/// A fingerprint of everything that determines the stage's output, independent of sharding:
/// the model and rules (`model_fingerprint`), preprocessing, settings and the sample list.
pub fn fingerprint(
    model_fingerprint: &str,
    dataset: &Dataset,
    preprocess: &Preprocess,
    settings: &RelevanceSettings,
) -> String {
    let mut f = Fingerprint::new()
        .bytes(model_fingerprint)
        .bytes(format!(
            "relevance-schema-{}",
            spray_store::relevance::SCHEMA_VERSION
        ))
        .spray_version()
        .json(preprocess)
        .json(settings);
    for c in &dataset.classes {
        f = f.bytes(c).bytes([0]);
    }
    for s in &dataset.samples {
        f = f
            .bytes(&s.sample_id)
            .bytes(s.path.to_string_lossy().as_bytes())
            .bytes(format!("{:?}{:?}", s.labels, s.targets));
    }
    f.finish()
}

struct DecodedBatch {
    part: usize,
    images: Vec<(usize, std::result::Result<PreparedImage, String>)>,
    last_in_part: bool,
}

/// Run the stage for `job.shard`, skipping finished parts.
pub fn run(job: &RelevanceJob<'_>) -> Result<RelevanceSummary> {
    job.settings.validate()?;
    let started = Instant::now();
    let samples = &job.dataset.samples;
    let part_size = job.settings.part_size;
    let parts = samples.len().div_ceil(part_size);
    let manifest = RelevanceManifest {
        fingerprint: fingerprint(
            &job.model_fingerprint,
            job.dataset,
            job.preprocess,
            job.settings,
        ),
        classes: job.dataset.classes.clone(),
        images: samples.len(),
        parts,
        layout: job.layout(),
    };
    std::fs::create_dir_all(&job.dir)
        .map_err(|e| RelevanceError::Config(format!("cannot create {}: {e}", job.dir.display())))?;
    // The writer's own guard (the pipeline clears a stale folder first): parts of different
    // inputs are never mixed.
    if spray_store::stage::relevance_state(&job.dir, &manifest.fingerprint)
        == spray_store::StageState::Stale
    {
        return Err(RelevanceError::Config(format!(
            "{} holds relevance maps computed from other inputs or settings; \
             use another output folder or rerun with --force relevance",
            job.dir.display()
        )));
    }
    spray_store::write_atomically(
        &manifest_path(&job.dir),
        &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )?;

    let mine: Vec<usize> = (0..parts).filter(|&p| job.shard.owns(p)).collect();
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
    let image_count: usize = todo
        .iter()
        .map(|&p| (samples.len() - p * part_size).min(part_size))
        .sum();
    tracing::info!(
        "relevance: shard {}: {} of {} parts to do ({image_count} images)",
        job.shard,
        todo.len(),
        mine.len()
    );

    check_model_input(job)?;
    let mut engine = LrpEngine::new(
        job.model,
        SessionConfig {
            device: job.device,
            threads: job.threads,
        },
    )?;
    let bar = if job.progress {
        let bar = indicatif::ProgressBar::new(image_count as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} relevance [{elapsed_precise}] {bar:30} {pos}/{len} images  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    let batch_size = job.settings.batch_size;
    let (sender, receiver) = mpsc::sync_channel::<DecodedBatch>(2);
    let result = std::thread::scope(|scope| -> Result<()> {
        let todo_ref = &todo;
        scope.spawn(move || {
            for &part in todo_ref {
                let start = part * part_size;
                let end = (start + part_size).min(samples.len());
                let mut batch_start = start;
                while batch_start < end {
                    let batch_end = (batch_start + batch_size).min(end);
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
                        last_in_part: batch_end == end,
                    };
                    if sender.send(message).is_err() {
                        return; // the consumer stopped on an error
                    }
                    batch_start = batch_end;
                }
            }
        });

        let mut rows: Vec<RelevanceRecord> = Vec::new();
        let mut errors: Vec<ErrorRecord> = Vec::new();
        let mut health = BatchHealth::default();
        for batch in receiver {
            bar.inc(batch.images.len() as u64);
            summary.images += batch.images.len();
            explain_batch(
                job,
                &mut engine,
                batch.images,
                &mut rows,
                &mut errors,
                &mut health,
            )?;
            if batch.last_in_part {
                spray_store::relevance::write_errors(&errors_path(&job.dir, batch.part), &errors)?;
                // The part file is the completion mark: written last, atomically.
                spray_store::relevance::write_part(
                    &part_path(&job.dir, batch.part),
                    &job.layout(),
                    &rows,
                )?;
                summary.rows += rows.len();
                summary.errors += errors.len();
                summary.parts_written += 1;
                rows.clear();
                errors.clear();
            }
        }
        Ok(())
    });
    bar.finish_and_clear();
    result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The batch this stage will build ([N, 3, H, W] or [N, H, W, 3]) must fit the model's declared
/// input; a mismatch is reported before any image is decoded, with the fix when it is the layout.
fn check_model_input(job: &RelevanceJob<'_>) -> Result<()> {
    let declared = &job.model.signature.input_shape;
    if declared.len() != 4 {
        return Ok(());
    }
    let [h, w] = job.preprocess.input_size.map(i64::from);
    let fits = |dims: [i64; 3]| {
        declared[1..]
            .iter()
            .zip(dims)
            .all(|(d, want)| d.is_none_or(|d| d == want))
    };
    let (nchw, nhwc) = (fits([3, h, w]), fits([h, w, 3]));
    let ok = match job.preprocess.layout {
        TensorLayout::Nchw => nchw,
        TensorLayout::Nhwc => nhwc,
    };
    if ok {
        return Ok(());
    }
    let shown: Vec<String> = declared
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    let hint = match job.preprocess.layout {
        TensorLayout::Nchw if nhwc => " (channels last: set layout = \"nhwc\" under [model])",
        TensorLayout::Nhwc if nchw => " (channels first: set layout = \"nchw\" under [model])",
        _ => " (check input_size and layout under [model])",
    };
    Err(RelevanceError::Config(format!(
        "the model's input is [{}] but [model] prepares {} batches of {h}x{w} images with 3 channels{hint}",
        shown.join(", "),
        match job.preprocess.layout {
            TensorLayout::Nchw => "[N, 3, H, W]",
            TensorLayout::Nhwc => "[N, H, W, 3]",
        },
    )))
}

/// What the process has seen of the model's outputs so far.
#[derive(Default)]
struct BatchHealth {
    /// Samples explained (sound or not) and, of those, samples with non-finite logits.
    explained: usize,
    non_finite_logits: usize,
}

/// A model whose logits are NaN or ∞ for a whole first batch is broken, not its inputs: stop
/// before anything is written, naming the constants that can explain it.
fn refuse_broken_model(job: &RelevanceJob<'_>, health: &BatchHealth) -> Result<()> {
    if health.explained == 0 || health.non_finite_logits < health.explained {
        return Ok(());
    }
    let suspects: Vec<String> = job
        .model
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

/// Explain the decoded images of one batch for their targets; broken images and samples whose
/// logits or relevance are not finite become errors.
fn explain_batch(
    job: &RelevanceJob<'_>,
    engine: &mut LrpEngine,
    images: Vec<(usize, std::result::Result<PreparedImage, String>)>,
    rows: &mut Vec<RelevanceRecord>,
    errors: &mut Vec<ErrorRecord>,
    health: &mut BatchHealth,
) -> Result<()> {
    let [h, w] = job.preprocess.input_size;
    let (h, w) = (h as usize, w as usize);
    let plane = 3 * h * w;
    // (sample, image, target) jobs: one per selected label, or one for the prediction.
    let mut jobs: Vec<(&Sample, &PreparedImage, i64)> = Vec::new();
    for (i, image) in &images {
        let sample = &job.dataset.samples[*i];
        match image {
            Err(reason) => errors.push(ErrorRecord {
                image_index: sample.index as i64,
                sample_id: sample.sample_id.clone(),
                path: sample.path.display().to_string(),
                reason: reason.clone(),
            }),
            Ok(prepared) => match job.settings.target {
                TargetMode::Predicted => jobs.push((sample, prepared, -1)),
                TargetMode::Label => {
                    for &t in &sample.targets {
                        jobs.push((sample, prepared, t as i64));
                    }
                }
            },
        }
    }
    let nhwc = job.preprocess.layout == TensorLayout::Nhwc;
    for chunk in jobs.chunks(job.settings.batch_size) {
        let mut input = Vec::with_capacity(chunk.len() * plane);
        for (_, prepared, _) in chunk {
            input.extend_from_slice(&prepared.tensor);
        }
        let mut input = ndarray::ArrayD::from_shape_vec(vec![chunk.len(), 3, h, w], input)
            .map_err(|e| RelevanceError::Config(e.to_string()))?;
        if nhwc {
            input = input
                .permuted_axes(vec![0, 2, 3, 1])
                .as_standard_layout()
                .into_owned();
        }
        let targets: Vec<i64> = chunk.iter().map(|j| j.2).collect();
        let explanation = engine.explain(input.view(), &targets)?;
        let classes = explanation.logits.shape()[1];
        let non_finite = explanation.non_finite();
        let first_batch = health.explained == 0;
        health.explained += chunk.len();
        health.non_finite_logits += non_finite
            .iter()
            .filter(|f| f.is_some_and(|f| f.in_logits()))
            .count();
        if first_batch {
            refuse_broken_model(job, health)?;
        }
        // Everything downstream (channel sums, pooling) reads [N, C, H, W].
        let relevance = if nhwc {
            explanation.relevance.view().permuted_axes(vec![0, 3, 1, 2])
        } else {
            explanation.relevance.view()
        };
        let relevance = relevance.as_standard_layout();
        let relevance = relevance
            .as_slice()
            .ok_or_else(|| RelevanceError::Config("relevance not contiguous".into()))?;
        for (k, (sample, prepared, _)) in chunk.iter().enumerate() {
            if let Some(problem) = non_finite[k] {
                // One error row per image: an image explained for several labels fails once.
                if errors
                    .last()
                    .is_none_or(|e| e.image_index != sample.index as i64)
                {
                    errors.push(ErrorRecord {
                        image_index: sample.index as i64,
                        sample_id: sample.sample_id.clone(),
                        path: sample.path.display().to_string(),
                        reason: problem.to_string(),
                    });
                }
                continue;
            }
            let class = explanation.targets[k];
            if class < 0 || class as usize >= classes {
                return Err(RelevanceError::Config(format!(
                    "{}: class {class} is outside the model's {classes} outputs",
                    sample.sample_id
                )));
            }
            let logits = explanation.logits.row(k);
            let target_logit = logits[class as usize];
            let predicted = spray_engine::argmax(logits.iter().copied()) as i32;
            let r = &relevance[k * plane..(k + 1) * plane];
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
            let (image_grids, thumbnail, colour) = if job.settings.store_images {
                (
                    job.settings
                        .grids
                        .iter()
                        .map(|&g| image_grid(&prepared.rgb, g))
                        .collect(),
                    maps::thumbnail_png(&prepared.rgb, job.settings.thumbnail_side),
                    Some(spray_store::relevance::colour_stats(prepared.rgb.as_raw())),
                )
            } else {
                (Vec::new(), None, None)
            };
            let concept = match &explanation.concept {
                Some(c) => {
                    let row = c.row(k).to_vec();
                    let want = job.model.signature.concept.as_ref().map(|c| c.channels());
                    if Some(row.len()) != want {
                        return Err(RelevanceError::Config(format!(
                            "the concept layers gave {} channels, their weights say {}",
                            row.len(),
                            want.unwrap_or(0)
                        )));
                    }
                    Some(row)
                }
                None => None,
            };
            rows.push(RelevanceRecord {
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
                image_grids,
                thumbnail,
                concept,
                colour,
            });
        }
    }
    Ok(())
}

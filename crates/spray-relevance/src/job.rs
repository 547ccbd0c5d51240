//! What one run of the stage is given ([`RelevanceJob`]), what it reports
//! ([`RelevanceSummary`]), and the fingerprint of everything that determines its output.

use std::path::{Path, PathBuf};

use spray_dataset::{Dataset, Preprocess};
use spray_engine::{CompiledModel, Device, OptimizedCache};
use spray_store::relevance::RelevanceLayout;
use spray_store::{Fingerprint, Shard};

use crate::RelevanceSettings;

/// Everything the stage needs.
pub struct RelevanceJob<'a> {
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
    /// The compiled LRP model (compiling first means an unsupported op is reported before any
    /// image is read), or its signature and how to load it.
    pub model: CompiledModel<'a>,
    /// Where ONNX Runtime's optimised graph of the model is kept between processes (a resumed
    /// run, each Slurm shard); `None`: optimised again by each.
    pub engine_cache: Option<OptimizedCache>,
    /// The stage's cache key ([`fingerprint`]), written to its manifest: computed once, by
    /// whoever decided the stage must run (the pipeline, from its own `Fingerprints`), so the
    /// key it checks and the key the stage writes cannot differ.
    pub fingerprint: String,
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
                .signature()
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

/// A fingerprint of everything that determines the stage's output, independent of sharding:
/// the model and rules (`model_fingerprint`), preprocessing, settings and the sample list —
/// each sample's path relative to `paths_relative_to` where it lies under it. Why relative: a
/// project folder moved or copied whole (the run done on a cluster, its report made on a
/// laptop) holds the same files under another absolute path, and must not be computed again;
/// a dataset root edited to another folder changes the relative paths and is.
pub fn fingerprint(
    model_fingerprint: &str,
    dataset: &Dataset,
    preprocess: &Preprocess,
    settings: &RelevanceSettings,
    paths_relative_to: Option<&Path>,
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
        let path = paths_relative_to
            .and_then(|base| s.path.strip_prefix(base).ok())
            .unwrap_or(&s.path);
        f = f
            .bytes(&s.sample_id)
            .bytes(path.to_string_lossy().as_bytes())
            .bytes(format!("{:?}{:?}", s.labels, s.targets));
    }
    f.finish()
}

//! Datasets and image preprocessing for spray's relevance stage.
//!
//! A [`Dataset`] is a deterministic list of [`Sample`]s (path, labels) plus class names, read from
//! one of four layouts (Pascal VOC, ImageNet, class folders, a manifest). Reading a layout
//! touches only directory listings and label files, never the images: a broken image is found
//! (and recorded) later, when it is decoded, so one bad file never stops a run.

mod blocks;
pub mod integrity;
mod layouts;
mod preprocess;
mod quantisation;

use std::path::{Path, PathBuf};

pub use blocks::block_stats;
pub use layouts::VOC_CLASSES;
pub use preprocess::{
    decode_rgb, ChannelOrder, PixelScale, PreparedImage, Preprocess, Resize, ResizeSide,
    SplitMix64, SquareMode, TensorLayout,
};
pub use quantisation::jpeg_quality;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {message}")]
    Layout { path: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

pub(crate) fn layout_err(path: &Path, message: impl Into<String>) -> DatasetError {
    DatasetError::Layout {
        path: path.display().to_string(),
        message: message.into(),
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The folder layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `VOCdevkit/VOC<year>/{JPEGImages,Annotations,ImageSets/Main}`.
    Voc,
    /// `train/<wnid>/*.JPEG`, `val/<wnid>/*` or flat `val/` with `LOC_val_solution.csv`.
    Imagenet,
    /// `<root>/<class>/*.{jpg,jpeg,png}`.
    Folder,
    /// A CSV or Parquet file with `path` and `label`/`labels` (and optionally `sample_id`).
    Manifest,
}

/// Where a dataset is and which part of it to use (the `[dataset]` table of a pipeline).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    /// Dataset root (for a manifest: the manifest file).
    pub root: PathBuf,
    /// VOC: the image set (`test`, `trainval`, ...; default `test`); ImageNet: `train` or `val`
    /// (default `val`).
    #[serde(default)]
    pub split: Option<String>,
    /// VOC year (default 2007).
    #[serde(default)]
    pub year: Option<String>,
    /// VOC: count objects marked difficult (label 0) as positives.
    #[serde(default)]
    pub include_difficult: bool,
    /// Folder/manifest: the class list, in model output order (default: sorted names).
    /// VOC/ImageNet: the classes to use (names or wnids), indices stay the dataset's.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Keep at most this many images per class (the first ones in the dataset's order).
    #[serde(default)]
    pub limit_per_class: Option<usize>,
}

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Position in the dataset's deterministic order (after subsetting).
    pub index: usize,
    pub sample_id: String,
    pub path: PathBuf,
    /// All ground-truth labels (class indices), sorted.
    pub labels: Vec<i32>,
    /// The labels selected for explanation (after the class subset and per-class limit).
    pub targets: Vec<i32>,
}

/// A dataset: class names (index = model output) and samples in a fixed order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Read a dataset's layout (labels and file lists, not the images).
    pub fn open(spec: &DatasetSpec) -> Result<Dataset> {
        let (classes, raw, selected) = match spec.kind {
            DatasetKind::Voc => layouts::voc(spec)?,
            DatasetKind::Imagenet => layouts::imagenet(spec)?,
            DatasetKind::Folder => layouts::folder(spec)?,
            DatasetKind::Manifest => layouts::manifest(spec)?,
        };
        Ok(Dataset::assemble(
            classes,
            raw,
            selected,
            spec.limit_per_class,
        ))
    }

    /// Order the samples, apply the class subset and per-class limit, number them.
    fn assemble(
        classes: Vec<String>,
        mut raw: Vec<layouts::RawSample>,
        selected: Option<Vec<bool>>,
        limit: Option<usize>,
    ) -> Dataset {
        raw.sort_by(|a, b| a.sample_id.cmp(&b.sample_id).then(a.path.cmp(&b.path)));
        let mut taken = vec![0usize; classes.len()];
        let unlabelled = raw.iter().all(|r| r.labels.is_empty());
        let mut samples = Vec::new();
        for r in raw {
            let mut labels = r.labels;
            labels.sort_unstable();
            labels.dedup();
            let mut targets = Vec::new();
            for &l in &labels {
                let Some(count) = taken.get_mut(l as usize) else {
                    continue;
                };
                if selected.as_ref().is_some_and(|s| !s[l as usize]) {
                    continue;
                }
                if limit.is_some_and(|lim| *count >= lim) {
                    continue;
                }
                *count += 1;
                targets.push(l);
            }
            if targets.is_empty() && !unlabelled {
                continue;
            }
            samples.push(Sample {
                index: samples.len(),
                sample_id: r.sample_id,
                path: r.path,
                labels,
                targets,
            });
        }
        Dataset { classes, samples }
    }

    pub fn class_name(&self, index: i32) -> String {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.classes.get(i))
            .cloned()
            .unwrap_or_else(|| format!("class {index}"))
    }
}

//! The stage's settings (`[relevance]` in a pipeline file, plus `[lrp] target`) and the
//! columns they ask for.

use spray_store::relevance::RelevanceLayout;

use crate::{RelevanceError, Result};

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
            // From the same decoded file, before its resize: two numbers more a row.
            compression_stats: self.store_images,
            // The forward pass's outputs (K values a row): the verify stage's recipients'
            // logits before any change, not scored again.
            logits: true,
        }
    }

    /// Refuse settings the stage cannot work with, naming the key.
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |key, reason| Err(RelevanceError::InvalidSetting { key, reason });
        if self.grids.is_empty() || self.grids.contains(&0) {
            return invalid("grids", "must list at least one positive grid size");
        }
        if self.part_size == 0 {
            return invalid("part_size", "must be positive");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_key() {
        let key_of = |settings: RelevanceSettings| match settings.validate() {
            Err(RelevanceError::InvalidSetting { key, .. }) => key,
            other => panic!("expected an invalid setting, got {other:?}"),
        };
        let base = RelevanceSettings::default();
        assert!(base.validate().is_ok());
        let grids = RelevanceSettings {
            grids: vec![8, 0],
            ..base.clone()
        };
        assert_eq!(key_of(grids), "grids");
        let part_size = RelevanceSettings {
            part_size: 0,
            ..base.clone()
        };
        assert_eq!(key_of(part_size), "part_size");
        let batch_size = RelevanceSettings {
            batch_size: 0,
            ..base
        };
        assert_eq!(key_of(batch_size), "batch_size");
    }
}

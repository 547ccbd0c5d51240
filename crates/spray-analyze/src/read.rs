//! Reading the relevance parts into the analysis's [`Dataset`]: which columns, the pooled
//! grid of each map (stored, or pooled from the stored full map), its prepared features, and
//! the rows put in (image, class) order.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray16::Array2;
use spray_store::relevance::{self as rel, ReadOptions, RelevanceLayout, RelevanceRecord};

use crate::dataset::{AnalysisRow, Dataset};
use crate::error::{AnalyzeError, Result};
use crate::settings::AnalysisSettings;
use crate::sources::SpacePlan;
use crate::{contrast, features};

/// Where the maps' g × g grids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GridSource {
    /// g.
    pub grid: usize,
    /// Pooled from the stored full map (the dataset does not store `grid_<g>`).
    pub from_map: bool,
}

impl GridSource {
    /// The grid of `settings`, refused when it is 0 or the dataset can serve it neither
    /// stored nor from its full map.
    pub fn new(settings: &AnalysisSettings, layout: &RelevanceLayout) -> Result<GridSource> {
        let g = settings.grid;
        if g == 0 {
            return Err(AnalyzeError::InvalidSetting {
                key: "grid",
                reason: "must be positive".into(),
            });
        }
        let from_map = !layout.grids.contains(&g);
        if from_map && !layout.store_map {
            return Err(AnalyzeError::InvalidSetting {
                key: "grid",
                reason: format!(
                    "the relevance dataset has grids {:?} and no full map; add {g} to \
                     relevance.grids",
                    layout.grids
                ),
            });
        }
        Ok(GridSource { grid: g, from_map })
    }

    /// The columns to read up front for the grid and the `spaces`.
    pub fn read_options(&self, spaces: &SpacePlan) -> ReadOptions {
        ReadOptions {
            grids: if self.from_map {
                Vec::new()
            } else {
                vec![self.grid]
            },
            map: self.from_map,
            images: spaces.reads.images,
            thumbnails: false,
            // Read per group instead (`GroupRows::concepts`): at ImageNet size the column of
            // every row would be 1.28M × ΣC floats (15.7 GB for ResNet-50's default layers).
            concept: false,
            // Six values a row (31 MB at 1.28M rows): read up front.
            colour: spaces.reads.colour,
            // Two values a row: read up front too.
            compression: spaces.reads.compression,
            logits: false,
        }
    }

    /// A record's g × g grid; an error names the part (`part`) it was read from.
    fn grid_of(&self, r: &mut RelevanceRecord, part: &Path) -> Result<Vec<f32>> {
        let g = self.grid;
        let grid = if self.from_map {
            let Some((mh, mw, map)) = r.map.as_ref() else {
                return Err(AnalyzeError::CorruptInput {
                    path: part.display().to_string(),
                    reason: "a row without the stored map the analysis needs".into(),
                });
            };
            rel::sum_pool(map, *mh as usize, *mw as usize, g, g)
        } else {
            std::mem::take(&mut r.grids)
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        if grid.len() != g * g {
            return Err(AnalyzeError::CorruptInput {
                path: part.display().to_string(),
                reason: format!(
                    "sample '{}' has a {}-cell relevance grid, expected {g} x {g}",
                    r.sample_id,
                    grid.len()
                ),
            });
        }
        Ok(grid)
    }
}

/// Reads every part of the relevance dataset in `relevance_dir`, keeping only what the
/// analysis reads, prepared as each part is read: at ImageNet size (1.3M maps) a full
/// RelevanceRecord per map — names, labels, a stored map of up to 64×64 — would hold several
/// times the features in memory, and a pooled grid per row beside the group's matrix would be
/// a second copy of the features (2 GB at d = 400).
pub(crate) fn read_dataset(
    relevance_dir: &Path,
    parts: Vec<PathBuf>,
    source: &GridSource,
    spaces: &SpacePlan,
    settings: &AnalysisSettings,
) -> Result<Dataset> {
    let options = source.read_options(spaces);
    let d = source.grid * source.grid;
    let mut rows: Vec<AnalysisRow> = Vec::new();
    let mut prepared: Vec<f32> = Vec::new();
    for (part_index, part) in parts.iter().enumerate() {
        for (row_in_part, mut r) in rel::read_part(part, &options)?.into_iter().enumerate() {
            let grid = source.grid_of(&mut r, part)?;
            prepared.extend(features::prepare(
                &grid,
                source.grid,
                settings.blur_sigma,
                settings.sign,
                settings.normalization,
            ));
            rows.push(AnalysisRow {
                image_index: r.image_index,
                class_index: r.class_index,
                sample_id: r.sample_id,
                path: r.path,
                mass: contrast::relevance_mass(&grid),
                read_at: rows.len(),
                image_grid: Mutex::new(r.image_grids.into_iter().next()),
                colour: r.colour,
                compression: r.compression,
                source: (part_index as u32, row_in_part as u32),
            });
        }
    }
    rows.shrink_to_fit();
    rows.sort_by_key(|a| (a.image_index, a.class_index));
    if rows.is_empty() {
        return Err(AnalyzeError::NoMaps {
            dir: relevance_dir.display().to_string(),
        });
    }
    let prepared = in_row_order(prepared, d, &rows)?;
    Ok(Dataset::new(rows, prepared, parts))
}

/// The prepared features (rows of `d`, in reading order) as a matrix whose row i is
/// `rows[i]`'s, whatever order the parts were read in; reordered in place.
fn in_row_order(mut prepared: Vec<f32>, d: usize, rows: &[AnalysisRow]) -> Result<Array2<f32>> {
    let order: Vec<usize> = rows.iter().map(|r| r.read_at).collect();
    features::gather_rows_in_place(&mut prepared, d, &order);
    prepared.shrink_to_fit();
    Array2::from_shape_vec((rows.len(), d), prepared)
        .map_err(|e| AnalyzeError::Internal(format!("prepared features: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::settings::Grouping;
    use spray_store::relevance::{ConceptLayerInfo, RelevanceManifest};

    pub(crate) fn layout(grids: Vec<usize>, store_map: bool) -> RelevanceLayout {
        RelevanceLayout {
            grids,
            store_map,
            store_images: false,
            concept_layers: Vec::new(),
            colour_stats: false,
            compression_stats: false,
            logits: false,
        }
    }

    /// A record of image `image_index` for `class`, with a 2 × 2 grid and a 4 × 4 map whose
    /// cells all hold `image_index + 1`, and the concept values 1, 2, …, `concepts`.
    pub(crate) fn record(image_index: i64, class: i32, concepts: usize) -> RelevanceRecord {
        let v = image_index as f32 + 1.0;
        RelevanceRecord {
            image_index,
            sample_id: format!("img{image_index}"),
            path: format!("img{image_index}.png"),
            class_index: class,
            class_name: format!("c{class}"),
            labels: vec![class],
            target_logit: 1.0,
            predicted_class: class,
            relevance_sum: 1.0,
            conservation_error: 0.0,
            grids: vec![vec![v; 4]],
            map: Some((4, 4, vec![v; 16])),
            image_grids: Vec::new(),
            thumbnail: None,
            concept: (concepts > 0).then(|| (1..=concepts).map(|c| c as f32).collect()),
            colour: None,
            compression: None,
            logits: None,
        }
    }

    /// A finished relevance dataset in `dir`: one part per entry of `parts`.
    pub(crate) fn write_dataset(
        dir: &Path,
        layout: &RelevanceLayout,
        parts: &[Vec<RelevanceRecord>],
    ) -> Vec<PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        let paths: Vec<PathBuf> = (0..parts.len()).map(|p| rel::part_path(dir, p)).collect();
        for (path, rows) in paths.iter().zip(parts) {
            rel::write_part(path, layout, rows).unwrap();
        }
        let manifest = RelevanceManifest {
            fingerprint: "test".into(),
            classes: vec!["c0".into(), "c1".into()],
            images: parts.iter().map(Vec::len).sum(),
            parts: parts.len(),
            layout: layout.clone(),
        };
        spray_store::write_atomically(
            &rel::manifest_path(dir),
            &serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        paths
    }

    pub(crate) fn concept_layout(channels: &[usize]) -> RelevanceLayout {
        RelevanceLayout {
            concept_layers: channels
                .iter()
                .enumerate()
                .map(|(i, &channels)| ConceptLayerInfo {
                    node: format!("layer{i}"),
                    channels,
                })
                .collect(),
            ..layout(vec![2], false)
        }
    }

    #[test]
    fn the_grid_is_stored_or_pooled_from_the_map() {
        let settings = |grid| AnalysisSettings {
            grid,
            ..AnalysisSettings::default()
        };
        let stored = GridSource::new(&settings(2), &layout(vec![2, 4], false)).unwrap();
        assert!(!stored.from_map);
        assert_eq!(stored.read_options(&SpacePlan::default()).grids, vec![2]);
        let pooled = GridSource::new(&settings(3), &layout(vec![2], true)).unwrap();
        assert!(pooled.from_map);
        assert!(pooled.read_options(&SpacePlan::default()).map);
        let err = GridSource::new(&settings(3), &layout(vec![2], false)).unwrap_err();
        assert!(
            matches!(err, AnalyzeError::InvalidSetting { key: "grid", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("add 3 to relevance.grids"),
            "{err}"
        );
        let zero = GridSource::new(&settings(0), &layout(vec![2], true)).unwrap_err();
        assert_eq!(zero.to_string(), "analysis.grid: must be positive");
    }

    #[test]
    fn rows_come_in_image_order_with_their_prepared_features() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(vec![2], true);
        // parts in the opposite order of their images
        let parts = write_dataset(
            tmp.path(),
            &layout,
            &[
                vec![record(2, 0, 0), record(3, 1, 0)],
                vec![record(0, 1, 0)],
            ],
        );
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        let source = GridSource::new(&settings, &layout).unwrap();
        let spaces = SpacePlan::default();
        let dataset = read_dataset(tmp.path(), parts.clone(), &source, &spaces, &settings).unwrap();
        let groups = dataset.groups(Grouping::All);
        let all = dataset.group(-1, &groups[&-1], &[]);
        let ids: Vec<i64> = all.ids().iter().map(|id| id.0).collect();
        assert_eq!(ids, vec![0, 2, 3]);
        // Σ|R| of each grid: 4 cells of image_index + 1
        assert_eq!(all.masses(), vec![4.0, 12.0, 16.0]);
        // L1-normalised grids
        assert!(all
            .take_relevance()
            .unwrap()
            .iter()
            .all(|&v| (v - 0.25).abs() < 1e-7));

        // pooled from the 4 × 4 map: each of the 2 × 2 cells sums 4 map cells
        let pooled_settings = AnalysisSettings {
            grid: 2,
            normalization: crate::features::Normalization::None,
            ..AnalysisSettings::default()
        };
        let pooled = GridSource {
            grid: 2,
            from_map: true,
        };
        let dataset = read_dataset(tmp.path(), parts, &pooled, &spaces, &pooled_settings).unwrap();
        let groups = dataset.groups(Grouping::All);
        let first = dataset
            .group(-1, &groups[&-1], &[])
            .take_relevance()
            .unwrap();
        assert_eq!(first.row(0).to_vec(), vec![4.0; 4]);
        assert_eq!(first.row(2).to_vec(), vec![16.0; 4]);
    }

    #[test]
    fn a_row_without_its_map_or_grid_names_the_part() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        let no_map = layout(vec![2], false);
        let parts = write_dataset(tmp.path(), &no_map, &[vec![record(0, 0, 0)]]);
        let pooled = GridSource {
            grid: 2,
            from_map: true,
        };
        let spaces = SpacePlan::default();
        let Err(err) = read_dataset(tmp.path(), parts.clone(), &pooled, &spaces, &settings) else {
            panic!("read without a map");
        };
        assert!(matches!(err, AnalyzeError::CorruptInput { .. }), "{err}");
        assert!(err.to_string().contains("part-00000.parquet"), "{err}");
        let stored = GridSource {
            grid: 2,
            from_map: false,
        };
        let mut short = record(5, 0, 0);
        short.grids = vec![vec![1.0; 3]];
        let err = stored.grid_of(&mut short, &parts[0]).unwrap_err();
        assert!(matches!(err, AnalyzeError::CorruptInput { .. }), "{err}");
        assert!(
            err.to_string().ends_with(
                "part-00000.parquet: sample 'img5' has a 3-cell relevance grid, expected 2 x 2"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_dataset_without_maps_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(vec![2], false);
        let parts = write_dataset(tmp.path(), &layout, &[Vec::new()]);
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        let source = GridSource::new(&settings, &layout).unwrap();
        let spaces = SpacePlan::default();
        let Err(err) = read_dataset(tmp.path(), parts, &source, &spaces, &settings) else {
            panic!("an empty dataset was read");
        };
        assert!(matches!(err, AnalyzeError::NoMaps { .. }), "{err}");
    }
}

//! The feature spaces, and everything the analysis does differently per space: which spaces a
//! run analyses ([`SpacePlan`]), how a group's features are built in each
//! ([`for_each_space`], by the space table's [`FeatureSource`]). How each space is laid out
//! in 2-D is the table's too (`SpaceSpec::layout`).

use std::ops::Range;

use ndarray16::Array2;
use spray_store::relevance::RelevanceLayout;
use spray_store::space::FeatureSource;
use spray_store::FeatureSpace;

use crate::dataset::GroupRows;
use crate::error::{AnalyzeError, Result};
use crate::features;
use crate::settings::AnalysisSettings;

/// The spaces one run analyses besides the relevance maps (always analysed), decided once
/// from the settings and what the relevance dataset stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpacePlan {
    /// The image-space baseline (thesis Fig 6.3): the pooled inputs, stored beside a stored
    /// grid (a grid pooled from the full map has no pooled inputs of its size).
    pub images: bool,
    /// Per concept layer analysed, its channels in the concept column.
    pub concept_ranges: Vec<Range<usize>>,
    /// The images' colour statistics.
    pub colour: bool,
}

impl SpacePlan {
    /// `grid_from_map`: the analysis pools its grid from the stored full map.
    pub fn new(
        settings: &AnalysisSettings,
        layout: &RelevanceLayout,
        grid_from_map: bool,
    ) -> SpacePlan {
        let mut concept_ranges = if settings.concept_spaces {
            layout.concept_ranges()
        } else {
            Vec::new()
        };
        // The space's label holds the layer's index in a byte.
        concept_ranges.truncate(usize::from(u8::MAX) + 1);
        SpacePlan {
            images: settings.image_baseline && layout.store_images && !grid_from_map,
            concept_ranges,
            colour: settings.colour_space && layout.colour_stats,
        }
    }

    /// The spaces in the order a group's rows are written: relevance, image, each concept
    /// layer, colour.
    pub fn spaces(&self) -> Vec<FeatureSpace> {
        let mut spaces = vec![FeatureSpace::Relevance];
        if self.images {
            spaces.push(FeatureSpace::Image);
        }
        spaces.extend((0..self.concept_ranges.len()).map(|l| FeatureSpace::Concept(l as u8)));
        if self.colour {
            spaces.push(FeatureSpace::Colour);
        }
        spaces
    }
}

/// One space of a group, ready to analyse.
pub(crate) struct SpaceFeatures {
    pub space: FeatureSpace,
    pub features: Array2<f32>,
    /// Each row's mass before normalisation, where the space has one (see
    /// `GroupPoints::mass`).
    pub mass: Option<Vec<f64>>,
}

/// Builds the group's features in each space of `plan`, in order, and hands them to
/// `analyse` one space at a time. The concept column is read once for all concept layers and
/// let go before the next space.
pub(crate) fn for_each_space(
    plan: &SpacePlan,
    group: &GroupRows<'_>,
    mut analyse: impl FnMut(SpaceFeatures) -> Result<()>,
) -> Result<()> {
    let mut concepts: Option<Vec<Vec<f32>>> = None;
    for space in plan.spaces() {
        if space.spec().source != FeatureSource::ConceptChannels {
            concepts = None;
        }
        let (features, mass) = match space.spec().source {
            FeatureSource::RelevanceGrid => (group.take_relevance()?, Some(group.masses())),
            FeatureSource::ImageGrid => (to_matrix(&group.take_image_grids()), None),
            FeatureSource::ConceptChannels => {
                let layer = space.layer().unwrap_or(0);
                if concepts.is_none() {
                    concepts = Some(group.concepts()?);
                }
                let range = plan
                    .concept_ranges
                    .get(usize::from(layer))
                    .cloned()
                    .ok_or_else(|| {
                        AnalyzeError::Internal(format!("no channels for concept layer {layer}"))
                    })?;
                let (features, mass) =
                    features::concept_features(concepts.as_deref().unwrap_or_default(), range)
                        .map_err(|short| group.corrupt_at(short.row, &short.to_string()))?;
                (features, Some(mass))
            }
            FeatureSource::ColourStatistics => (features::colour_features(&group.colours()?), None),
        };
        analyse(SpaceFeatures {
            space,
            features,
            mass,
        })?;
    }
    Ok(())
}

/// Equal-length rows as a matrix (none: 0 × 0).
fn to_matrix(rows: &[Vec<f32>]) -> Array2<f32> {
    let d = rows.first().map(|r| r.len()).unwrap_or(0);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Array2::from_shape_vec((rows.len(), d), flat).unwrap_or_else(|_| Array2::zeros((0, d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::read::tests::{concept_layout, record, write_dataset};
    use crate::read::{read_dataset, GridSource};
    use crate::settings::Grouping;

    #[test]
    fn the_plan_follows_the_settings_and_what_is_stored() {
        let mut layout = concept_layout(&[3, 5]);
        layout.store_images = true;
        layout.colour_stats = true;
        let all = SpacePlan::new(&AnalysisSettings::default(), &layout, false);
        assert_eq!(all.concept_ranges, vec![0..3, 3..8]);
        assert_eq!(
            all.spaces(),
            vec![
                FeatureSpace::Relevance,
                FeatureSpace::Image,
                FeatureSpace::Concept(0),
                FeatureSpace::Concept(1),
                FeatureSpace::Colour
            ]
        );
        // a grid pooled from the map has no image baseline
        assert!(!SpacePlan::new(&AnalysisSettings::default(), &layout, true).images);
        let off = AnalysisSettings {
            image_baseline: false,
            concept_spaces: false,
            colour_space: false,
            ..AnalysisSettings::default()
        };
        assert_eq!(
            SpacePlan::new(&off, &layout, false).spaces(),
            vec![FeatureSpace::Relevance]
        );
        let nothing_stored = concept_layout(&[]);
        assert_eq!(
            SpacePlan::new(&AnalysisSettings::default(), &nothing_stored, false).spaces(),
            vec![FeatureSpace::Relevance]
        );
    }

    #[test]
    fn only_the_map_spaces_get_t_sne() {
        use spray_store::space::Layout2d;
        let layout = |s: FeatureSpace| s.spec().layout;
        assert_eq!(layout(FeatureSpace::Relevance), Layout2d::Tsne);
        assert_eq!(layout(FeatureSpace::Image), Layout2d::Tsne);
        assert_eq!(layout(FeatureSpace::Concept(3)), Layout2d::SpectralStart);
        assert_eq!(layout(FeatureSpace::Colour), Layout2d::SpectralStart);
    }

    fn read(dir: &std::path::Path, parts: Vec<std::path::PathBuf>, plan: &SpacePlan) -> Dataset {
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        let source = GridSource {
            grid: 2,
            from_map: false,
        };
        read_dataset(dir, parts, &source, plan, &settings).unwrap()
    }

    #[test]
    fn each_space_gets_its_own_features_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = concept_layout(&[1, 3]);
        let parts = write_dataset(
            tmp.path(),
            &layout,
            &[
                vec![record(0, 0, 4), record(1, 0, 4)],
                vec![record(2, 0, 4)],
            ],
        );
        let plan = SpacePlan::new(&AnalysisSettings::default(), &layout, false);
        let dataset = read(tmp.path(), parts, &plan);
        let groups = dataset.groups(Grouping::PerClass);
        let group = dataset.group(0, &groups[&0], &[]);
        let mut seen = Vec::new();
        for_each_space(&plan, &group, |s| {
            seen.push((s.space, s.features.dim(), s.mass.clone()));
            Ok(())
        })
        .unwrap();
        let spaces: Vec<FeatureSpace> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            spaces,
            vec![
                FeatureSpace::Relevance,
                FeatureSpace::Concept(0),
                FeatureSpace::Concept(1)
            ]
        );
        assert_eq!(seen[0].1, (3, 4));
        assert_eq!(seen[0].2, Some(vec![4.0, 8.0, 12.0]));
        // concept values 1, 2, 3, 4: layer 0 is channel 0, layer 1 channels 1..4
        assert_eq!(seen[1].1, (3, 1));
        assert_eq!(seen[1].2, Some(vec![1.0; 3]));
        assert_eq!(seen[2].1, (3, 3));
        assert_eq!(seen[2].2, Some(vec![9.0; 3]));
    }

    #[test]
    fn a_short_concept_row_names_its_part_and_row() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = concept_layout(&[2, 2]);
        let parts = write_dataset(tmp.path(), &layout, &[vec![record(0, 0, 4)]]);
        let mut plan = SpacePlan::new(&AnalysisSettings::default(), &layout, false);
        // a layer beyond the stored values
        plan.concept_ranges[1] = 2..6;
        let dataset = read(tmp.path(), parts, &plan);
        let groups = dataset.groups(Grouping::PerClass);
        let group = dataset.group(0, &groups[&0], &[]);
        let err = for_each_space(&plan, &group, |_| Ok(())).unwrap_err();
        assert!(matches!(err, AnalyzeError::CorruptInput { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("part-00000.parquet: row 0 ('img0') has 4 concept values"),
            "{text}"
        );
    }

    #[test]
    fn rows_become_a_matrix() {
        let m = to_matrix(&[vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(m.dim(), (2, 2));
        assert_eq!(m[[1, 0]], 3.0);
        assert_eq!(to_matrix(&[]).dim(), (0, 0));
    }
}

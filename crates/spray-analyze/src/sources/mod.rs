//! How the analysis builds each feature space's features: one file per
//! [`FeatureSource`] (the space table's `SpaceSpec::source`), [`source`] the table of them,
//! and [`SpacePlan`]: which spaces one run analyses, in the space table's order. A source's
//! file says which `[analysis]` switch turns it on, how many spaces of it the relevance
//! dataset offers (one per concept layer, …), which columns it reads and how a group's
//! features are built. How each space is laid out in 2-D is the table's too
//! (`SpaceSpec::layout`).
//!
//! A new space built from an existing source is its row in `spray_store::space`; one with new
//! features is also one file here and its line in [`source`].

mod colour_statistics;
mod compression_statistics;
mod concept_channels;
mod image_grid;
mod relevance_grid;

use std::any::Any;
use std::ops::Range;

use ndarray16::Array2;
use spray_store::relevance::RelevanceLayout;
use spray_store::space::FeatureSource;
use spray_store::{FeatureSpace, SPACES};

use crate::dataset::GroupRows;
use crate::error::Result;
use crate::settings::AnalysisSettings;

/// Everything the analysis knows about one kind of features.
pub(crate) struct Source {
    /// Whether the run's `[analysis]` settings switch it on.
    pub on: fn(&AnalysisSettings) -> bool,
    /// How many spaces of the source the relevance dataset offers (0: none); `grid_from_map`:
    /// the analysis pools its grid from the stored full map.
    pub instances: fn(&RelevanceLayout, bool) -> usize,
    /// The columns read up front, for every row, when a space of the source is analysed.
    pub reads: Columns,
    /// A group's features in one space of the source.
    pub build: fn(&mut Building<'_, '_>) -> Result<Built>,
}

/// A group's features in one space, and each row's mass before normalisation where the
/// space has one (see `GroupPoints::mass`).
pub(crate) type Built = (Array2<f32>, Option<Vec<f64>>);

/// Relevance-dataset columns read up front (beside the grid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Columns {
    pub images: bool,
    pub colour: bool,
    pub compression: bool,
}

/// What a source's `build` gets.
pub(crate) struct Building<'p, 'g> {
    pub plan: &'p SpacePlan,
    pub group: &'p GroupRows<'g>,
    pub space: FeatureSpace,
    /// The source's own state across its spaces of one group (the concept column, read
    /// once for every concept layer); let go before the next source's spaces.
    pub state: &'p mut Option<Box<dyn Any>>,
}

/// THE table: the file that builds `source`'s features.
pub(crate) fn source(source: FeatureSource) -> &'static Source {
    match source {
        FeatureSource::RelevanceGrid => &relevance_grid::SOURCE,
        FeatureSource::ImageGrid => &image_grid::SOURCE,
        FeatureSource::ConceptChannels => &concept_channels::SOURCE,
        FeatureSource::ColourStatistics => &colour_statistics::SOURCE,
        FeatureSource::CompressionStatistics => &compression_statistics::SOURCE,
    }
}

/// The spaces one run analyses, decided once from the settings and what the relevance
/// dataset stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpacePlan {
    /// In the order a group's rows are written: the space table's (relevance, image, each
    /// concept layer, colour, compression).
    pub spaces: Vec<FeatureSpace>,
    /// Per concept layer analysed, its channels in the concept column.
    pub concept_ranges: Vec<Range<usize>>,
    /// What the plan's sources read up front.
    pub reads: Columns,
}

impl SpacePlan {
    /// `grid_from_map`: the analysis pools its grid from the stored full map.
    pub fn new(
        settings: &AnalysisSettings,
        layout: &RelevanceLayout,
        grid_from_map: bool,
    ) -> SpacePlan {
        let mut plan = SpacePlan::default();
        for (row, spec) in SPACES.iter().enumerate() {
            let source = source(spec.source);
            if !(source.on)(settings) {
                continue;
            }
            let instances = (source.instances)(layout, grid_from_map);
            // An indexed space's label holds its index in a byte: at most 256 of a source.
            let spaces: Vec<FeatureSpace> = (0..instances)
                .map_while(|i| FeatureSpace::from_row(row, u8::try_from(i).ok()?))
                .collect();
            if spaces.is_empty() {
                continue;
            }
            plan.spaces.extend(spaces);
            plan.reads.images |= source.reads.images;
            plan.reads.colour |= source.reads.colour;
            plan.reads.compression |= source.reads.compression;
        }
        plan.concept_ranges = layout.concept_ranges();
        plan
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
/// `analyse` one space at a time, but for a space without mass whose features are all zero.
/// A source's state (the concept column) is let go before the next source's spaces.
pub(crate) fn for_each_space(
    plan: &SpacePlan,
    group: &GroupRows<'_>,
    mut analyse: impl FnMut(SpaceFeatures) -> Result<()>,
) -> Result<()> {
    let mut state: Option<Box<dyn Any>> = None;
    let mut previous = None;
    for &space in &plan.spaces {
        let kind = space.spec().source;
        if previous != Some(kind) {
            state = None;
            previous = Some(kind);
        }
        let (features, mass) = (source(kind).build)(&mut Building {
            plan,
            group,
            space,
            state: &mut state,
        })?;
        // A space of per-image statistics in which no image differs from another (the
        // compression space of PNG files, which have no JPEG blocks) holds no group: it is
        // left out of the group's spectra rather than cut at random.
        if mass.is_none() && features.iter().all(|&v| v == 0.0) {
            continue;
        }
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
    use crate::AnalyzeError;
    use spray_store::relevance::RelevanceRecord;

    #[test]
    fn the_plan_follows_the_settings_and_what_is_stored() {
        let mut layout = concept_layout(&[3, 5]);
        layout.store_images = true;
        layout.colour_stats = true;
        layout.compression_stats = true;
        let all = SpacePlan::new(&AnalysisSettings::default(), &layout, false);
        assert_eq!(all.concept_ranges, vec![0..3, 3..8]);
        // The space table's order: relevance, image, each concept layer, colour, compression
        // (then any row added after them).
        assert_eq!(
            all.spaces[..6],
            [
                FeatureSpace::Relevance,
                FeatureSpace::Image,
                FeatureSpace::Concept(0),
                FeatureSpace::Concept(1),
                FeatureSpace::Colour,
                FeatureSpace::Compression
            ]
        );
        let row = |s: &FeatureSpace| SPACES.iter().position(|r| std::ptr::eq(r, s.spec()));
        assert!(all.spaces.windows(2).all(|w| row(&w[0]) <= row(&w[1])));
        assert_eq!(
            all.reads,
            Columns {
                images: true,
                colour: true,
                compression: true
            }
        );
        // a grid pooled from the map has no image baseline
        let pooled = SpacePlan::new(&AnalysisSettings::default(), &layout, true);
        assert!(!pooled.spaces.contains(&FeatureSpace::Image) && !pooled.reads.images);
        let off = AnalysisSettings {
            image_baseline: false,
            concept_spaces: false,
            colour_space: false,
            compression_space: false,
            ..AnalysisSettings::default()
        };
        assert_eq!(
            SpacePlan::new(&off, &layout, false).spaces,
            vec![FeatureSpace::Relevance]
        );
        let nothing_stored = concept_layout(&[]);
        assert_eq!(
            SpacePlan::new(&AnalysisSettings::default(), &nothing_stored, false).spaces,
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
        assert_eq!(layout(FeatureSpace::Compression), Layout2d::SpectralStart);
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
    fn a_statistics_space_without_differences_is_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layout = concept_layout(&[]);
        layout.compression_stats = true;
        // Class 0: one file blockier than the others; class 1: files alike (PNGs: zeros).
        let blocky = |i: i64, class: i32, b: f32| RelevanceRecord {
            compression: Some(vec![b, b, 100.0]),
            ..record(i, class, 0)
        };
        let rows = vec![
            blocky(0, 0, 0.9),
            blocky(1, 0, 0.0),
            blocky(2, 0, 0.1),
            blocky(3, 1, 0.0),
            blocky(4, 1, 0.0),
        ];
        let parts = write_dataset(tmp.path(), &layout, &[rows]);
        let plan = SpacePlan::new(&AnalysisSettings::default(), &layout, false);
        assert_eq!(
            plan.spaces,
            vec![FeatureSpace::Relevance, FeatureSpace::Compression]
        );
        let dataset = read(tmp.path(), parts, &plan);
        let groups = dataset.groups(Grouping::PerClass);
        let spaces = |class: i32| {
            let group = dataset.group(class, &groups[&class], &[]);
            let mut seen = Vec::new();
            for_each_space(&plan, &group, |s| {
                seen.push(s.space);
                Ok(())
            })
            .unwrap();
            seen
        };
        assert_eq!(
            spaces(0),
            vec![FeatureSpace::Relevance, FeatureSpace::Compression]
        );
        assert_eq!(spaces(1), vec![FeatureSpace::Relevance]);
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

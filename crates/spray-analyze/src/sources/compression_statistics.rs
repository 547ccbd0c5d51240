//! [`FeatureSource::CompressionStatistics`](spray_store::space::FeatureSource::CompressionStatistics):
//! how each file was compressed — its JPEG block statistics (`spray_dataset::block_stats`:
//! the luma's step ratio on the 8-pixel grid, across rows and across columns) and the
//! quantiser scale of the quality it was last saved at (`relevance::quantiser_scale` of
//! `spray_dataset::jpeg_quality`) — z-scored over the group (`features::z_scores`);
//! `[analysis] compression_space`, where the relevance dataset stores them. The blocks show a
//! compression the file went through before its last save too; the quality shows a moderate
//! one exactly, where the blocks it left lie within the rest's spread (benches/RESULTS.md).
//! Where every file of the group was saved alike the quality's column z-scores to zero and
//! the blocks alone group them.

use spray_store::relevance::{quantiser_scale, QUALITY_AT};

use super::{Columns, Source};
use crate::features;

pub(super) static SOURCE: Source = Source {
    on: |settings| settings.compression_space,
    instances: |layout, _| usize::from(layout.compression_stats),
    reads: Columns {
        images: false,
        colour: false,
        compression: true,
    },
    build: |b| {
        let rows: Vec<Vec<f32>> = b
            .group
            .compression()?
            .into_iter()
            .map(as_features)
            .collect();
        let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        Ok((features::z_scores(&rows), None))
    },
};

/// A row's stored values as features: the block statistics as they are, the quality as its
/// quantiser scale (the steps, which grow with the detail lost; see `quantiser_scale`).
fn as_features(row: &[f32]) -> Vec<f32> {
    row.iter()
        .enumerate()
        .map(|(i, &v)| {
            if i == QUALITY_AT {
                quantiser_scale(v)
            } else {
                v
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quality_becomes_its_quantiser_scale() {
        assert_eq!(as_features(&[0.5, 0.25, 50.0]), vec![0.5, 0.25, 100.0]);
        assert_eq!(as_features(&[0.0, 0.0, 100.0]), vec![0.0, 0.0, 0.0]);
        assert_eq!(as_features(&[0.1, 0.2, 25.0]), vec![0.1, 0.2, 200.0]);
        // A row of an older width (the block statistics alone) keeps its two values.
        assert_eq!(as_features(&[0.1, 0.2]), vec![0.1, 0.2]);
    }
}

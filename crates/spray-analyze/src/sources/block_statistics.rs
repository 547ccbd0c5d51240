//! [`FeatureSource::BlockStatistics`](spray_store::space::FeatureSource::BlockStatistics):
//! each file's JPEG block statistics (`spray_dataset::block_stats`: the luma's step ratio on
//! the 8-pixel grid, across rows and across columns), z-scored over the group
//! (`features::z_scores`); `[analysis] compression_space`, where the relevance dataset stores
//! them.

use super::{Columns, Source};
use crate::features;

pub(super) static SOURCE: Source = Source {
    on: |settings| settings.compression_space,
    instances: |layout, _| usize::from(layout.block_stats),
    reads: Columns {
        images: false,
        colour: false,
        blocks: true,
    },
    build: |b| Ok((features::z_scores(&b.group.blocks()?), None)),
};

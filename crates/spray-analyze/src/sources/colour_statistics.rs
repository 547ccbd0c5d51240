//! [`FeatureSource::ColourStatistics`](spray_store::space::FeatureSource::ColourStatistics):
//! each image's per-channel mean and log spread (`relevance::colour_stats`), z-scored over the
//! group (`features::z_scores`); `[analysis] colour_space`, where the relevance
//! dataset stores them.

use super::{Columns, Source};
use crate::features;

pub(super) static SOURCE: Source = Source {
    on: |settings| settings.colour_space,
    instances: |layout, _| usize::from(layout.colour_stats),
    reads: Columns {
        images: false,
        colour: true,
        compression: false,
    },
    build: |b| Ok((features::z_scores(&b.group.colours()?), None)),
};

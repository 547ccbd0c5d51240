//! [`FeatureSource::ImageGrid`](spray_store::space::FeatureSource::ImageGrid): the input
//! images pooled to the analysis grid (thesis Fig 6.3's baseline), `[analysis]
//! image_baseline`. Only beside a stored grid: a grid pooled from the full map has no pooled
//! inputs of its size.

use super::{to_matrix, Columns, Source};

pub(super) static SOURCE: Source = Source {
    on: |settings| settings.image_baseline,
    instances: |layout, grid_from_map| usize::from(layout.store_images && !grid_from_map),
    reads: Columns {
        images: true,
        colour: false,
        compression: false,
    },
    build: |b| Ok((to_matrix(&b.group.take_image_grids()), None)),
};

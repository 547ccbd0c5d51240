//! [`FeatureSource::RelevanceGrid`](spray_store::space::FeatureSource::RelevanceGrid): the
//! relevance maps pooled to the analysis grid, blurred, signed and normalised as they were
//! read (`features::prepare`); always analysed.

use super::{Columns, Source};

pub(super) static SOURCE: Source = Source {
    on: |_| true,
    instances: |_, _| 1,
    reads: Columns {
        images: false,
        colour: false,
        compression: false,
    },
    build: |b| Ok((b.group.take_relevance()?, Some(b.group.masses()))),
};

//! [`FeatureSource::ConceptChannels`](spray_store::space::FeatureSource::ConceptChannels):
//! per concept layer of the relevance dataset, the relevance of its channels
//! (`features::concept_features`); `[analysis] concept_spaces`. The concept column is read
//! per group (at ImageNet size the column of every row would not fit), once for all of the
//! group's concept layers.

use super::{Building, Built, Columns, Source};
use crate::error::{AnalyzeError, Result};
use crate::features;

pub(super) static SOURCE: Source = Source {
    on: |settings| settings.concept_spaces,
    instances: |layout, _| layout.concept_layers.len(),
    reads: Columns {
        images: false,
        colour: false,
        compression: false,
    },
    build,
};

fn build(b: &mut Building<'_, '_>) -> Result<Built> {
    let layer = b.space.layer().unwrap_or(0);
    if b.state.is_none() {
        *b.state = Some(Box::new(b.group.concepts()?));
    }
    let concepts: &[Vec<f32>] = b
        .state
        .as_ref()
        .and_then(|s| s.downcast_ref::<Vec<Vec<f32>>>())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let range = b
        .plan
        .concept_ranges
        .get(usize::from(layer))
        .cloned()
        .ok_or_else(|| AnalyzeError::Internal(format!("no channels for concept layer {layer}")))?;
    let (features, mass) = features::concept_features(concepts, range)
        .map_err(|short| b.group.corrupt_at(short.row, &short.to_string()))?;
    Ok((features, Some(mass)))
}

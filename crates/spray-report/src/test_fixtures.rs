//! Small stage rows for the unit tests.

use spray_store::analysis::{ClassSpectrum, ClusterContrast, SampleEmbedding};
use spray_store::FeatureSpace;

/// A relevance-space spectrum of 100 images with eigenvalues 0, 0.1, 0.5.
pub(crate) fn spectrum(class_index: i32, name: &str, contrast: ClusterContrast) -> ClassSpectrum {
    ClassSpectrum {
        class_index,
        class_name: name.into(),
        space: FeatureSpace::Relevance,
        n: 100,
        knn_k: 10,
        eigenvalues: vec![0.0, 0.1, 0.5],
        gaps: vec![0.1, 0.4],
        largest_gap: 0.4,
        largest_gap_index: 2,
        estimated_clusters: 2,
        clusters: 2,
        near_zero: 1,
        lambda2: 0.1,
        score: contrast.score(),
        contrast,
    }
}

/// A relevance-space sample of class 0.
pub(crate) fn sample(image_index: i64, cluster: i32, centrality: f32) -> SampleEmbedding {
    SampleEmbedding {
        class_index: 0,
        space: FeatureSpace::Relevance,
        image_index,
        sample_id: format!("img{image_index}"),
        path: format!("data/cat/img{image_index}.png"),
        cluster,
        tsne_x: image_index as f32,
        tsne_y: 0.0,
        spectral: Vec::new(),
        centrality,
        split: cluster % 2,
    }
}

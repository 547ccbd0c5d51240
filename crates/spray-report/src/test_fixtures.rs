//! Small stage rows for the unit tests.

use spray_store::analysis::{ClassSpectrum, ClusterContrast, SampleEmbedding};
use spray_store::verify::ClusterLevel;
use spray_store::EvidenceTest;
use spray_store::FeatureSpace;

use crate::evidence::EvidenceRow;
use crate::RankedClass;

/// A relevance-space spectrum of 100 images with eigenvalues 0, 0.1, 0.5, whose strongest
/// cluster by the contrast criterion is also its most cut off.
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
        cut_off: contrast,
    }
}

pub(crate) fn ranked(rank: usize, spectrum: ClassSpectrum) -> RankedClass {
    RankedClass {
        rank,
        spectrum,
        baseline: None,
        evidence: None,
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

/// An evidence row of class 0 ("cat") for a group of `space`.
pub(crate) fn evidence_row(space: FeatureSpace, level: ClusterLevel, cluster: i32) -> EvidenceRow {
    EvidenceRow {
        class_index: 0,
        class_name: "cat".into(),
        space,
        level,
        cluster,
        size: 20,
        share: 0.2,
        test: space.spec().own_test.unwrap_or(EvidenceTest::SharedRegion),
        region: "r1c1 r1c2".into(),
        region_cells: 2,
        grid: 8,
        occlusion_drop: 0.4,
        occlusion_drop_rest: 0.05,
        accuracy_before: 1.0,
        accuracy_after: 0.5,
        transplant_logit_gain: 2.5,
        transplant_flip_rate: 0.6,
        transplant_flip_rate_rest: 0.1,
        transplant_images: 50,
        control_images: 50,
        occluded_images: 20,
        pictures: None,
    }
}

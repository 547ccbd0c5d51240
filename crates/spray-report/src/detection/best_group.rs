//! Which of a shortcut class's groups matches its artifact images best: every cluster and
//! every side of the two-way split, in every suspect space, scored by its one-vs-rest
//! adjusted Rand index against "carries the artifact".

use spray_store::analysis::SampleEmbedding;
use spray_store::verify::ClusterLevel;
use spray_store::{FeatureSpace, GroupId};

use super::metrics::adjusted_rand_index;
use super::truth::ArtifactImages;
use crate::PRIMARY_SPACE;

/// A group and how well it matches the artifact images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupMatch {
    pub group: GroupId,
    /// One-vs-rest adjusted Rand index of the group against the artifact images, in [−1, 1].
    pub ari: f64,
}

impl GroupMatch {
    /// What a class without any group scores: no cluster of the page's space, ARI −1.
    const NONE: GroupMatch = GroupMatch {
        group: GroupId {
            space: PRIMARY_SPACE,
            level: ClusterLevel::Cluster,
            label: -1,
        },
        ari: -1.0,
    };
}

/// A class's analysed images and how many of them carry the artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArtifactCount {
    pub carrying: usize,
    pub images: usize,
}

/// The images of the class (its samples in the page's space, where every analysed image is)
/// that carry the artifact.
pub(crate) fn count_artifact_images(
    class_samples: &[&SampleEmbedding],
    artifacts: &ArtifactImages,
) -> ArtifactCount {
    let members: Vec<&&SampleEmbedding> = class_samples
        .iter()
        .filter(|s| s.space == PRIMARY_SPACE)
        .collect();
    ArtifactCount {
        carrying: members.iter().filter(|s| artifacts.contains(s)).count(),
        images: members.len(),
    }
}

/// The best-matching group of a class, given its samples in every space; the first in
/// (space, level, label) order among equals.
pub(crate) fn best_group(
    class_samples: &[&SampleEmbedding],
    artifacts: &ArtifactImages,
) -> GroupMatch {
    let mut spaces: Vec<FeatureSpace> = class_samples
        .iter()
        .filter(|s| s.space.is_suspect())
        .map(|s| s.space)
        .collect();
    spaces.sort_unstable();
    spaces.dedup();
    let mut best: Option<GroupMatch> = None;
    for &space in &spaces {
        let members: Vec<&SampleEmbedding> = class_samples
            .iter()
            .copied()
            .filter(|s| s.space == space)
            .collect();
        let carries: Vec<i64> = members
            .iter()
            .map(|s| i64::from(artifacts.contains(s)))
            .collect();
        for level in [ClusterLevel::Cluster, ClusterLevel::Split] {
            let mut labels: Vec<i32> = members.iter().map(|s| label(s, level)).collect();
            labels.sort_unstable();
            labels.dedup();
            for &group in &labels {
                let inside: Vec<i64> = members
                    .iter()
                    .map(|s| i64::from(label(s, level) == group))
                    .collect();
                let ari = adjusted_rand_index(&inside, &carries);
                if ari > best.map_or(f64::NEG_INFINITY, |b| b.ari) {
                    best = Some(GroupMatch {
                        group: GroupId {
                            space,
                            level,
                            label: group,
                        },
                        ari,
                    });
                }
            }
        }
    }
    best.map_or(GroupMatch::NONE, |b| GroupMatch {
        ari: b.ari.max(-1.0),
        ..b
    })
}

/// A sample's group at `level`.
fn label(s: &SampleEmbedding, level: ClusterLevel) -> i32 {
    match level {
        ClusterLevel::Cluster => s.cluster,
        ClusterLevel::Split => s.split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::DetectionTruth;
    use crate::test_fixtures::sample;

    /// Images 0 and 1 carry the artifact.
    fn artifacts() -> ArtifactImages {
        let truth: DetectionTruth = serde_json::from_str(
            r#"{"shortcut_classes": {}, "images": [
                {"path": "cat/img0.png", "artifact": "tag"},
                {"path": "cat/img1.png", "artifact": "tag"}]}"#,
        )
        .unwrap();
        truth.artifact_images()
    }

    #[test]
    fn the_group_that_is_the_artifact_images_wins_in_whichever_space_it_is() {
        // relevance clusters mix the artifact images (0 and 1); the colour space's cluster 1
        // is them, and comes before the colour split's side 1, which is them too
        let mut samples = Vec::new();
        let groups = [(0, 1), (1, 1), (0, 0), (1, 0), (0, 2), (1, 2)];
        for (i, (relevance, colour)) in groups.into_iter().enumerate() {
            let mut s = sample(i as i64, relevance, 0.0);
            samples.push(s.clone());
            s.space = FeatureSpace::Colour;
            s.cluster = colour;
            s.split = colour % 2;
            samples.push(s);
        }
        let refs: Vec<&SampleEmbedding> = samples.iter().collect();
        let best = best_group(&refs, &artifacts());
        let want = GroupId {
            space: FeatureSpace::Colour,
            level: ClusterLevel::Cluster,
            label: 1,
        };
        assert_eq!(best.group, want, "{best:?}");
        assert!((best.ari - 1.0).abs() < 1e-12);
        let count = count_artifact_images(&refs, &artifacts());
        assert_eq!(
            count,
            ArtifactCount {
                carrying: 2,
                images: 6
            }
        );
    }

    #[test]
    fn a_class_without_samples_has_no_group() {
        assert_eq!(best_group(&[], &artifacts()), GroupMatch::NONE);
        let mut image_only = sample(0, 0, 0.0);
        image_only.space = FeatureSpace::Image;
        assert_eq!(best_group(&[&image_only], &artifacts()), GroupMatch::NONE);
    }
}

//! Which groups of a class are tested: every tested space's clusters and split sides, each set
//! of images once.

use std::collections::BTreeMap;

use spray_store::analysis::SampleEmbedding;
use spray_store::{ClusterLevel, FeatureSpace, GroupId};

use crate::members::Member;
use crate::VerifySettings;

/// (class, image, space) → (cluster, split side) of every tested space's samples.
pub type GroupLabels = BTreeMap<(i32, i64, FeatureSpace), (i32, i32)>;

/// The labels of the samples in the spaces the settings test
/// ([`VerifySettings::tests_space`]).
pub fn tested_labels(samples: &[SampleEmbedding], settings: &VerifySettings) -> GroupLabels {
    samples
        .iter()
        .filter(|s| settings.tests_space(s.space))
        .map(|s| {
            (
                (s.class_index, s.image_index, s.space),
                (s.cluster, s.split),
            )
        })
        .collect()
}

/// A group to test: its identity and its members (positions in the class's member list,
/// ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct TestedGroup {
    pub id: GroupId,
    pub members: Vec<usize>,
}

/// The class's groups in test order (`GroupId`'s: relevance first, clusters before split
/// sides within a space). A group with the same images as one before it — with two clusters
/// the split is the clustering; a concept layer may find the relevance space's group again —
/// is tested once, under its first name.
pub fn class_groups(class: i32, members: &[Member], labels: &GroupLabels) -> Vec<TestedGroup> {
    let mut groups: BTreeMap<GroupId, Vec<usize>> = BTreeMap::new();
    for (&(c, image, space), &(cluster, split)) in
        labels.range((class, i64::MIN, FeatureSpace::Relevance)..)
    {
        if c != class {
            break;
        }
        let Some(i) = members.iter().position(|m| m.image_index as i64 == image) else {
            continue;
        };
        for (level, label) in [
            (ClusterLevel::Cluster, cluster),
            (ClusterLevel::Split, split),
        ] {
            groups
                .entry(GroupId {
                    space,
                    level,
                    label,
                })
                .or_default()
                .push(i);
        }
    }
    let mut tested: Vec<TestedGroup> = Vec::new();
    for (id, mut members) in groups {
        members.sort_unstable();
        if !tested.iter().any(|t| t.members == members) {
            tested.push(TestedGroup { id, members });
        }
    }
    tested
}

/// Whether a group is worth testing: a real label, at least `min_cluster` images, not the
/// whole class, and at least the space's minimum share of the class
/// ([`VerifySettings::min_share`]: a test that averages over each donor's own region or
/// colours is noisy with few donors — 14 donors give a flip rate ± 0.13, binomial SE, more
/// than a flag's margin).
pub fn worth_testing(group: &TestedGroup, class_size: usize, settings: &VerifySettings) -> bool {
    let n = group.members.len();
    group.id.label >= 0
        && n >= settings.min_cluster
        && n != class_size
        && (n as f64) >= settings.min_share(group.id.space) * class_size as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::bare_member as member;

    #[test]
    fn groups_come_in_test_order_and_duplicates_once() {
        let members: Vec<Member> = (10..16).map(member).collect();
        let mut labels = GroupLabels::new();
        for (k, image) in (10..16).enumerate() {
            // Relevance: clusters {0,1,2} {3,4,5}; the split is the clustering (a duplicate).
            let c = i32::from(k >= 3);
            labels.insert((4, image, FeatureSpace::Relevance), (c, c));
            // Colour: clusters {0,1} {2..5}, split {0,1,2} {3,4,5} (= relevance: a duplicate).
            labels.insert((4, image, FeatureSpace::Colour), (i32::from(k >= 2), c));
        }
        // Another class's labels are not read.
        labels.insert((5, 10, FeatureSpace::Relevance), (7, 7));
        let groups = class_groups(4, &members, &labels);
        let names: Vec<(String, Vec<usize>)> = groups
            .iter()
            .map(|g| (g.id.name(), g.members.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("cluster 0".to_string(), vec![0, 1, 2]),
                ("cluster 1".to_string(), vec![3, 4, 5]),
                ("colour cluster 0".to_string(), vec![0, 1]),
                ("colour cluster 1".to_string(), vec![2, 3, 4, 5]),
            ]
        );
        let settings = VerifySettings {
            min_cluster: 3,
            concept_min_share: 0.5,
            ..VerifySettings::default()
        };
        let worth: Vec<bool> = groups
            .iter()
            .map(|g| worth_testing(g, 6, &settings))
            .collect();
        // colour cluster 0: 2 < min_cluster; the relevance space has no minimum share.
        assert_eq!(worth, [true, true, false, true]);
    }
}

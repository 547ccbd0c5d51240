//! Which samples a result is about: the analysed group (a class, or every sample) and, inside
//! it, a group the analysis found (a space's cluster or split side), the unit the verify stage
//! tests and the report names.

use crate::space::FeatureSpace;

/// The samples one analysis ran over. Stored as `class_index` (−1 for [`AnalysisGroup::All`])
/// in the analysis tables, whose column stays an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnalysisGroup {
    /// The samples labelled with this class.
    Class(i32),
    /// Every sample, whatever its class (`[analysis] all_samples`).
    All,
}

impl AnalysisGroup {
    /// The group of a stored `class_index` (negative: every sample).
    pub fn from_index(class_index: i32) -> Self {
        if class_index < 0 {
            AnalysisGroup::All
        } else {
            AnalysisGroup::Class(class_index)
        }
    }

    /// The stored `class_index`: the class, or −1.
    pub fn index(self) -> i32 {
        match self {
            AnalysisGroup::Class(c) => c,
            AnalysisGroup::All => -1,
        }
    }

    /// The class, when the group is one.
    pub fn class(self) -> Option<i32> {
        match self {
            AnalysisGroup::Class(c) => Some(c),
            AnalysisGroup::All => None,
        }
    }

    /// The group's part of file names: `c00007`, `all`.
    pub fn file_name(self) -> String {
        match self {
            AnalysisGroup::Class(c) => format!("c{c:05}"),
            AnalysisGroup::All => "all".into(),
        }
    }
}

/// The groupings of a class the verify stage tests: the analysis' clusters (their number from
/// the spectrum), and the two sides of its best two-way split. Why both: no one number of
/// clusters isolates every artifact — a rare artifact (15 % of a class) needs the finer
/// clustering, one on half the class the coarser split (`benches/RESULTS.md`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterLevel {
    /// `cluster` of the analysis' samples table.
    #[default]
    Cluster,
    /// `split` of the analysis' samples table.
    Split,
}

impl ClusterLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterLevel::Cluster => "cluster",
            ClusterLevel::Split => "split",
        }
    }

    /// How a group is named on the page: "cluster 3", "split side 1".
    pub fn label(self, id: i32) -> String {
        match self {
            ClusterLevel::Cluster => format!("cluster {id}"),
            ClusterLevel::Split => format!("split side {id}"),
        }
    }

    /// The level's part of a file name: `k` (cluster), `s` (split side).
    pub fn file_tag(self) -> &'static str {
        match self {
            ClusterLevel::Cluster => "k",
            ClusterLevel::Split => "s",
        }
    }
}

/// One group of a class's samples found by the analysis: in which space, at which level, and
/// its label there (the cluster's number or the split side). Ordered the way the verify stage
/// tests groups: relevance space first, clusters before split sides within a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId {
    pub space: FeatureSpace,
    pub level: ClusterLevel,
    pub label: i32,
}

impl GroupId {
    /// How the group is named on the page: "cluster 3", "split side 1" in the relevance space,
    /// "concept-0 cluster 2" in another space.
    pub fn name(&self) -> String {
        match self.space {
            FeatureSpace::Relevance => self.level.label(self.label),
            other => format!("{other} {}", self.level.label(self.label)),
        }
    }

    /// The group's part of a file name: `k2`, `c0s1`, `colk0`.
    pub fn file_tag(&self) -> String {
        format!(
            "{}{}{}",
            self.space.file_tag(),
            self.level.file_tag(),
            self.label
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_all_group_is_minus_one_and_back() {
        for index in [-1, 0, 7] {
            assert_eq!(AnalysisGroup::from_index(index).index(), index);
        }
        assert_eq!(AnalysisGroup::from_index(-5), AnalysisGroup::All);
        assert_eq!(AnalysisGroup::Class(7).file_name(), "c00007");
        assert_eq!(AnalysisGroup::All.file_name(), "all");
        assert_eq!(AnalysisGroup::All.class(), None);
    }

    #[test]
    fn groups_are_named_and_ordered_as_the_verify_stage_tests_them() {
        let g = |space, level, label| GroupId {
            space,
            level,
            label,
        };
        let mut groups = [
            g(FeatureSpace::Colour, ClusterLevel::Cluster, 0),
            g(FeatureSpace::Relevance, ClusterLevel::Split, 1),
            g(FeatureSpace::Concept(0), ClusterLevel::Cluster, 2),
            g(FeatureSpace::Relevance, ClusterLevel::Cluster, 3),
        ];
        groups.sort();
        let names: Vec<String> = groups.iter().map(GroupId::name).collect();
        assert_eq!(
            names,
            [
                "cluster 3",
                "split side 1",
                "concept-0 cluster 2",
                "colour cluster 0"
            ]
        );
        let tags: Vec<String> = groups.iter().map(GroupId::file_tag).collect();
        assert_eq!(tags, ["k3", "s1", "c0k2", "colk0"]);
    }
}

//! Which groups of a class are tested: every tested space's clusters and split sides, each set
//! of images once, the most distinct first, at most `max_groups` of them.

use std::collections::BTreeMap;

use spray_store::analysis::{ClassSpectrum, ClusterContrast, SampleEmbedding};
use spray_store::space::FeatureSource;
use spray_store::{ClusterLevel, FeatureSpace, GroupId};

use crate::members::Member;
use crate::probe::{is_tested, tests_of};
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
    /// The other names its space found the same images under (or nearly the same,
    /// [`class_groups`]), which were not tested again: a cluster that is also the split's
    /// smaller side. Its place in the space's order is the best of all its names
    /// (`within_space`).
    pub aliases: Vec<GroupId>,
}

impl TestedGroup {
    /// The rest of a class of `class_size` members: every position not in the group,
    /// ascending.
    pub fn rest(&self, class_size: usize) -> Vec<usize> {
        (0..class_size)
            .filter(|i| self.members.binary_search(i).is_err())
            .collect()
    }
}

/// (class, space) → the cluster the analysis found most distinct in that space.
pub type Contrasts = BTreeMap<(i32, FeatureSpace), ClusterContrast>;

/// What verify reads of the analysis to choose groups.
#[derive(Debug, Default)]
pub struct AnalysedGroups {
    pub labels: GroupLabels,
    pub contrasts: Contrasts,
}

impl AnalysedGroups {
    pub fn new(
        spectra: &[ClassSpectrum],
        samples: &[SampleEmbedding],
        settings: &VerifySettings,
    ) -> Self {
        AnalysedGroups {
            labels: tested_labels(samples, settings),
            contrasts: spectra
                .iter()
                .map(|s| ((s.class_index, s.space), s.contrast))
                .collect(),
        }
    }

    /// The groups of `class` to test, in order ([`class_groups`], then [`by_priority`]), and
    /// the reserve: the class's other groups worth testing in a space within the budget, in
    /// test order, which only a test that looks beyond the budget may take
    /// (`probe::Probe::beyond_budget`).
    pub fn tested_and_reserve(
        &self,
        class: i32,
        members: &[Member],
        settings: &VerifySettings,
    ) -> (Vec<TestedGroup>, Vec<TestedGroup>) {
        let mut all = class_groups(class, members, &self.labels, settings.same_group_overlap);
        all.retain(|g| {
            g.id.space.spec().source != FeatureSource::CompressionStatistics
                || compressed_harder_than_rest(g, members)
        });
        // A space outside the budget (`SpaceSpec::in_budget`) has its groups tested after the
        // budget's: its own test takes at most a few of them, and a group it does not take
        // costs nothing.
        let (outside, inside): (Vec<TestedGroup>, Vec<TestedGroup>) =
            all.into_iter().partition(|g| !g.id.space.spec().in_budget);
        let worth = |g: &TestedGroup| {
            is_tested(g.id.space.spec()) && worth_testing(g, members.len(), settings)
        };
        let mut tested = by_priority(
            class,
            members.len(),
            inside.clone(),
            &self.contrasts,
            settings,
        );
        let reserve = inside
            .into_iter()
            .filter(|g| worth(g) && !tested.iter().any(|t| t.members == g.members))
            .collect();
        tested.extend(outside.into_iter().filter(|g| worth(g)));
        (tested, reserve)
    }
}

/// How much blockier (`Member::blockiness`, a log step ratio) a compression-space group's
/// files must be on average than the rest of its class's to be tested. Why: the space's
/// features are z-scored within the class, so a class of files compressed alike is still cut
/// into groups; tested, each could take one of the spectrum transfer's two places of the class
/// from a group that holds a real difference. Files saved once more at JPEG quality 50 before
/// quality 90 are 0.22 blockier than those saved at 90 alone, at 12 about 0.8; a cut of a
/// class compressed alike at its median differs by about 0.19 (a spread of 0.12 per image on
/// natural photographs, benches/RESULTS.md). A group of files less blocky than the rest is the
/// other side of such a cut, and holds more fine content: the spectrum transfer would not
/// test it either.
const BLOCKIER: f32 = 0.25;

/// How much coarser (`Member::quantiser_scale`, libjpeg's percent) a compression-space
/// group's files were last quantised on average than the rest of its class's to be tested.
/// Why this much: files saved at qualities drawn from 55–98, cut at their median, differ by
/// about 43 (the blocks cannot tell such a cut from a real difference either); quality 50
/// among files saved at 70–98 by about 68.
const COARSER: f32 = 50.0;

/// Whether a compression-space group's files were compressed harder than the rest of its
/// class's: blockier by [`BLOCKIER`] or last quantised coarser by [`COARSER`] on average.
fn compressed_harder_than_rest(group: &TestedGroup, members: &[Member]) -> bool {
    exceeds_rest(group, members, |m| m.blockiness, BLOCKIER)
        || exceeds_rest(group, members, |m| m.quantiser_scale, COARSER)
}

/// Whether the group's mean of `value` exceeds the rest of its class's by `margin`; false
/// where a member has no finite value or either side is empty.
fn exceeds_rest(
    group: &TestedGroup,
    members: &[Member],
    value: fn(&Member) -> Option<f32>,
    margin: f32,
) -> bool {
    let mean = |rows: &mut dyn Iterator<Item = usize>| {
        let (mut sum, mut n) = (0.0f32, 0usize);
        for m in rows.filter_map(|k| members.get(k)) {
            match value(m) {
                Some(v) if v.is_finite() => sum += v,
                _ => return None,
            }
            n += 1;
        }
        (n > 0).then(|| sum / n as f32)
    };
    let inside = mean(&mut group.members.iter().copied());
    let rest = mean(&mut group.rest(members.len()).into_iter());
    matches!((inside, rest), (Some(a), Some(b)) if a - b >= margin)
}

/// The class's groups in test order (`GroupId`'s: relevance first, clusters before split
/// sides within a space). A group with the same images as one before it — with two clusters
/// the split is the clustering; a concept layer may find the relevance space's group again —
/// is tested once, under its first name; so is one that overlaps an earlier group of the same
/// evidence test by `same_group_overlap` or more (the two concept layers, or a cluster and a
/// split side, that differ by an image or two: the same measurement twice). A name dropped in
/// the tested group's own space is kept as its alias (`TestedGroup::aliases`).
pub fn class_groups(
    class: i32,
    members: &[Member],
    labels: &GroupLabels,
    same_group_overlap: f64,
) -> Vec<TestedGroup> {
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
        let again = |t: &TestedGroup| {
            t.members == members
                || (tests_of(t.id.space.spec()) == tests_of(id.space.spec())
                    && jaccard(&t.members, &members) >= same_group_overlap)
        };
        match tested.iter_mut().find(|t| again(t)) {
            Some(t) if t.id.space == id.space => t.aliases.push(id),
            Some(_) => {}
            None => tested.push(TestedGroup {
                id,
                members,
                aliases: Vec::new(),
            }),
        }
    }
    tested
}

/// |a ∩ b| / |a ∪ b| of two ascending lists.
pub(crate) fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let (mut i, mut j, mut shared) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let either = a.len() + b.len() - shared;
    shared as f64 / either.max(1) as f64
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

/// The groups of a class that are tested: those worth testing ([`worth_testing`]) whose space
/// has an evidence test, at most `settings.max_groups`, taken round-robin over the spaces
/// (the space whose most distinct cluster scores highest first, [`ClusterContrast::score`]),
/// each space's groups in `within_space` order. Why round-robin: a shortcut shows in one
/// space — a colour cast in the colour space, a texture in a concept layer — and a budget
/// spent on one space's many clusters would never reach it.
pub fn by_priority(
    class: i32,
    class_size: usize,
    groups: Vec<TestedGroup>,
    contrasts: &Contrasts,
    settings: &VerifySettings,
) -> Vec<TestedGroup> {
    let mut per_space: BTreeMap<FeatureSpace, Vec<TestedGroup>> = BTreeMap::new();
    for g in groups {
        if is_tested(g.id.space.spec()) && worth_testing(&g, class_size, settings) {
            per_space.entry(g.id.space).or_default().push(g);
        }
    }
    let contrast = |space: FeatureSpace| contrasts.get(&(class, space)).copied();
    let mut spaces: Vec<(f64, Vec<TestedGroup>)> = per_space
        .into_iter()
        .map(|(space, mut groups)| {
            let c = contrast(space);
            // Stable: equal keys keep the test order.
            groups.sort_by_key(|g| within_space(g, c.as_ref(), class_size));
            (c.map_or(0.0, |c| c.score()), groups)
        })
        .collect();
    spaces.sort_by(|a, b| b.0.total_cmp(&a.0));
    let budget = match settings.max_groups {
        0 => usize::MAX,
        n => n,
    };
    let mut queues: Vec<std::vec::IntoIter<TestedGroup>> =
        spaces.into_iter().map(|(_, g)| g.into_iter()).collect();
    let mut chosen = Vec::new();
    while chosen.len() < budget {
        let before = chosen.len();
        for queue in &mut queues {
            if chosen.len() < budget {
                chosen.extend(queue.next());
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    chosen
}

/// A space's groups, most suspect first: the cluster the analysis found most distinct
/// (`contrast`), then the smaller side of the two-way split (a shortcut is carried by part of a
/// class, and the split is the one-vs-rest cut), then the other clusters, smaller first, then
/// the larger split side. A group found under several names (`TestedGroup::aliases`) takes the
/// best place of any. Why: a cluster that is also the split's smaller side was tested under
/// its cluster name, and ordered as just another cluster it fell behind smaller ones — on a
/// held-out ResNet, a relevance cluster that was exactly a printed date's 36 images, and the
/// split's smaller side too, was left out of the budget (benches/RESULTS.md).
fn within_space(
    g: &TestedGroup,
    contrast: Option<&ClusterContrast>,
    class_size: usize,
) -> (u8, usize) {
    let n = g.members.len();
    let tier = |id: &GroupId| {
        let distinct = contrast.is_some_and(|c| c.cluster >= 0 && c.cluster == id.label);
        match id.level {
            ClusterLevel::Cluster if distinct => 0,
            ClusterLevel::Split if 2 * n <= class_size => 1,
            ClusterLevel::Cluster => 2,
            ClusterLevel::Split => 3,
        }
    };
    let best = std::iter::once(&g.id)
        .chain(&g.aliases)
        .map(tier)
        .min()
        .unwrap_or(3);
    (best, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::bare_member as member;

    #[test]
    fn the_rest_is_every_other_position_ascending() {
        let g = TestedGroup {
            id: GroupId {
                space: FeatureSpace::Relevance,
                level: ClusterLevel::Cluster,
                label: 0,
            },
            members: vec![1, 3, 4],
            aliases: Vec::new(),
        };
        assert_eq!(g.rest(6), [0, 2, 5]);
        assert_eq!(g.rest(0), Vec::<usize>::new());
    }

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
        let groups = class_groups(4, &members, &labels, 1.0);
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

    /// The groups tested of class 1 whose members 0..3 form compression cluster 0 (and the
    /// split's first side), the rest two clusters by parity; the relevance space has a group
    /// too. A budget of one group: a compression group is tested beside it, after it.
    fn tested_with_compression_groups(members: &[Member]) -> Vec<String> {
        let mut labels = GroupLabels::new();
        for (k, m) in members.iter().enumerate() {
            let image = m.image_index as i64;
            let cluster = if k < 3 {
                0
            } else if k % 2 == 0 {
                1
            } else {
                2
            };
            labels.insert(
                (1, image, FeatureSpace::Compression),
                (cluster, i32::from(k >= 3)),
            );
            labels.insert((1, image, FeatureSpace::Relevance), (i32::from(k >= 5), 0));
        }
        let analysed = AnalysedGroups {
            labels,
            contrasts: Contrasts::new(),
        };
        let settings = VerifySettings {
            min_cluster: 2,
            concept_min_share: 0.0,
            max_groups: 1,
            ..VerifySettings::default()
        };
        analysed
            .tested_and_reserve(1, members, &settings)
            .0
            .iter()
            .map(|g| g.id.name())
            .collect()
    }

    #[test]
    fn a_compression_group_is_tested_only_where_its_files_are_blockier() {
        let blocky = |image_index: usize, b: Option<f32>| Member {
            blockiness: b,
            ..member(image_index)
        };
        // Images 0..3 compressed hard (0.8), the rest alike (0.05 ± 0.1).
        let mut members: Vec<Member> = (0..3).map(|i| blocky(i, Some(0.8))).collect();
        members.extend((3..10).map(|i| blocky(i, Some(if i % 2 == 0 { 0.15 } else { -0.05 }))));
        // The hard cluster (0.8 against 0.05); not the rest's two clusters (0.15 against 0.29,
        // -0.05 against 0.37) nor the split's rest side; the relevance space's group as ever.
        assert_eq!(
            tested_with_compression_groups(&members),
            ["cluster 0", "compression cluster 0"]
        );
        // Without block statistics, no compression group is tested.
        let unknown: Vec<Member> = members
            .iter()
            .map(|m| blocky(m.image_index, None))
            .collect();
        assert!(tested_with_compression_groups(&unknown)
            .iter()
            .all(|n| !n.starts_with("compression")));
    }

    #[test]
    fn a_compression_group_saved_at_a_coarser_quality_is_tested() {
        // Blocks alike everywhere (0.1); images 0..3 saved last at quality 50 (scale 100), the
        // rest at 70–98 (scale 60 or 4, mean 28 or 36 by side).
        let saved = |image_index: usize, scale: f32| Member {
            blockiness: Some(0.1),
            quantiser_scale: Some(scale),
            ..member(image_index)
        };
        let with = |group: f32| -> Vec<Member> {
            let mut members: Vec<Member> = (0..3).map(|i| saved(i, group)).collect();
            members.extend((3..10).map(|i| saved(i, if i % 2 == 0 { 60.0 } else { 4.0 })));
            members
        };
        // 100 against 28: coarser by 72. The rest's clusters: 60 against 47 and 4 against 70.
        assert_eq!(
            tested_with_compression_groups(&with(100.0)),
            ["cluster 0", "compression cluster 0"]
        );
        // Quality 70 (scale 60) against the same rest: coarser by 32 only, as a cut of a class
        // saved at spread qualities is; no compression group.
        assert!(tested_with_compression_groups(&with(60.0))
            .iter()
            .all(|n| !n.starts_with("compression")));
    }

    fn group(
        space: FeatureSpace,
        level: ClusterLevel,
        label: i32,
        members: &[usize],
    ) -> TestedGroup {
        TestedGroup {
            id: GroupId {
                space,
                level,
                label,
            },
            members: members.to_vec(),
            aliases: Vec::new(),
        }
    }

    #[test]
    fn overlap_is_shared_over_either() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[1, 2], &[1, 2]), 1.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(jaccard(&[0], &[1]), 0.0);
    }

    #[test]
    fn a_near_copy_is_tested_once_within_a_test_but_not_across_tests() {
        let members: Vec<Member> = (0..20).map(member).collect();
        let mut labels = GroupLabels::new();
        for image in 0..20i64 {
            // concept-0 cluster 0: images 0..10; concept-1 cluster 0: 0..11 (Jaccard 10/11);
            // colour cluster 0: 0..10 too, another test.
            let c0 = i32::from(image >= 10);
            let c1 = i32::from(image >= 11);
            labels.insert((1, image, FeatureSpace::Concept(0)), (c0, 5));
            labels.insert((1, image, FeatureSpace::Concept(1)), (c1, 5));
            labels.insert((1, image, FeatureSpace::Colour), (i32::from(image >= 9), 5));
        }
        let names = |overlap: f64| -> Vec<String> {
            class_groups(1, &members, &labels, overlap)
                .iter()
                .map(|g| g.id.name())
                .collect()
        };
        let near = names(0.9);
        assert!(
            near.contains(&"concept-0 cluster 0".to_string()),
            "{near:?}"
        );
        assert!(
            !near.contains(&"concept-1 cluster 0".to_string()),
            "{near:?}"
        );
        assert!(near.contains(&"colour cluster 0".to_string()), "{near:?}");
        // Exact copies only: concept-1's cluster is its own group again.
        assert!(names(1.0).contains(&"concept-1 cluster 0".to_string()));
    }

    #[test]
    fn the_budget_goes_round_the_spaces_most_suspect_groups_first() {
        let r = FeatureSpace::Relevance;
        let c = FeatureSpace::Concept(0);
        let k = FeatureSpace::Colour;
        let (cl, sp) = (ClusterLevel::Cluster, ClusterLevel::Split);
        let groups = vec![
            group(r, cl, 0, &[0, 1, 2, 3]),
            group(r, cl, 1, &[4, 5, 6, 7, 8, 9]),
            group(r, sp, 0, &[0, 1, 2, 3, 4, 5, 6]),
            group(r, sp, 1, &[7, 8, 9]),
            group(c, cl, 0, &[0, 1, 2, 4, 5]),
            group(c, cl, 1, &[3, 6, 7, 8, 9]),
            group(k, cl, 0, &[0, 1, 2, 3, 4, 5]),
            group(k, cl, 1, &[6, 7, 8, 9]),
            group(FeatureSpace::Image, cl, 0, &[0, 1, 2]),
        ];
        let contrast = |cluster: i32, separation: f64| ClusterContrast {
            cluster,
            share: 0.5,
            separation,
            magnitude_shift: 0.0,
        };
        let contrasts = Contrasts::from([
            ((2, r), contrast(1, 0.5)),
            ((2, c), contrast(0, 0.9)),
            // No contrast for the colour space: its groups in their own order.
            // Another class's contrasts are not read.
            ((3, r), contrast(0, 1.0)),
        ]);
        let mut settings = VerifySettings {
            max_groups: 5,
            ..VerifySettings::default()
        };
        let order = |settings: &VerifySettings| -> Vec<String> {
            by_priority(2, 10, groups.clone(), &contrasts, settings)
                .iter()
                .map(|g| g.id.name())
                .collect()
        };
        // Round one: each space's first (concept-0's contrast scores highest, then the
        // relevance space's, then colour without one); round two begins with concept-0. In
        // the relevance space the smaller split side comes right after the contrast cluster.
        // The image space has no evidence test.
        assert_eq!(
            order(&settings),
            [
                "concept-0 cluster 0",
                "cluster 1",
                "colour cluster 1",
                "concept-0 cluster 1",
                "split side 1",
            ]
        );
        settings.max_groups = 0;
        let all = order(&settings);
        assert_eq!(all.len(), 8);
        assert_eq!(
            all[7], "split side 0",
            "the larger split side last: {all:?}"
        );
    }

    #[test]
    fn a_cluster_that_is_also_the_smaller_split_side_is_ordered_as_the_split_side() {
        // Relevance: clusters {0..4} (the analysis's most distinct), {4..7}, {7..9} and
        // {9..12}; the split's smaller side is cluster 3 exactly, and is tested as cluster 3.
        let members: Vec<Member> = (0..12).map(member).collect();
        let mut labels = GroupLabels::new();
        for image in 0..12i64 {
            let cluster = match image {
                0..=3 => 0,
                4..=6 => 1,
                7..=8 => 2,
                _ => 3,
            };
            labels.insert(
                (1, image, FeatureSpace::Relevance),
                (cluster, i32::from(image >= 9)),
            );
        }
        let groups = class_groups(1, &members, &labels, 1.0);
        let three = groups
            .iter()
            .find(|g| g.id.name() == "cluster 3")
            .expect("cluster 3 is tested");
        assert_eq!(three.aliases.len(), 1);
        assert_eq!(three.aliases[0].name(), "split side 1");
        let contrasts = Contrasts::from([(
            (1, FeatureSpace::Relevance),
            ClusterContrast {
                cluster: 0,
                share: 0.33,
                separation: 0.9,
                magnitude_shift: 0.0,
            },
        )]);
        let settings = VerifySettings {
            min_cluster: 2,
            max_groups: 2,
            ..VerifySettings::default()
        };
        let names: Vec<String> = by_priority(1, 12, groups, &contrasts, &settings)
            .iter()
            .map(|g| g.id.name())
            .collect();
        // Without its alias, cluster 3 (3 images) came after cluster 2 (2 images).
        assert_eq!(names, ["cluster 0", "cluster 3"]);
    }
}

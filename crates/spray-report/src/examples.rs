//! Which of a class's images the page pictures: its clusters' members, most central first; the
//! scatter plot's preview budget shared round robin across clusters; and each cluster's
//! prototype, the mean of its members' maps.

use std::collections::{BTreeMap, HashSet};

use spray_store::analysis::SampleEmbedding;

use crate::images;

/// A class's samples by cluster, each cluster's most central (smallest distance to its centre)
/// first, ties by image order.
pub(crate) fn by_cluster<'a>(
    members: &[&'a SampleEmbedding],
) -> BTreeMap<i32, Vec<&'a SampleEmbedding>> {
    let mut clusters: BTreeMap<i32, Vec<&SampleEmbedding>> = BTreeMap::new();
    for s in members {
        clusters.entry(s.cluster).or_default().push(s);
    }
    for list in clusters.values_mut() {
        list.sort_by(|a, b| {
            a.centrality
                .total_cmp(&b.centrality)
                .then(a.image_index.cmp(&b.image_index))
        });
    }
    clusters
}

/// The images whose pictures the scatter plot previews: the most central of each cluster,
/// then the second of each, … until `budget` images (or all of them).
pub(crate) fn previewed(
    clusters: &BTreeMap<i32, Vec<&SampleEmbedding>>,
    budget: usize,
) -> HashSet<i64> {
    let members: usize = clusters.values().map(Vec::len).sum();
    let mut pictured = HashSet::new();
    let mut depth = 0;
    while pictured.len() < budget.min(members) {
        let mut added = false;
        for list in clusters.values() {
            if let Some(s) = list.get(depth) {
                if pictured.len() < budget {
                    pictured.insert(s.image_index);
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
        depth += 1;
    }
    pictured
}

/// The mean of maps that share one size (the first's), as a heatmap data URI.
pub(crate) fn prototype(maps: &[&(i32, i32, Vec<f32>)]) -> Option<String> {
    let (h, w, first) = maps.first()?;
    let mut mean = vec![0.0f32; first.len()];
    for (_, _, m) in maps {
        for (a, v) in mean.iter_mut().zip(m) {
            *a += v / maps.len() as f32;
        }
    }
    Some(images::png_data_uri(&images::heatmap(
        &mean,
        *h as usize,
        *w as usize,
        1,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::sample;

    #[test]
    fn clusters_list_their_most_central_member_first() {
        let s = [
            sample(0, 1, 0.5),
            sample(1, 0, 0.9),
            sample(2, 1, 0.1),
            sample(3, 0, 0.9),
        ];
        let members: Vec<&SampleEmbedding> = s.iter().collect();
        let clusters = by_cluster(&members);
        let order = |c: i32| -> Vec<i64> { clusters[&c].iter().map(|s| s.image_index).collect() };
        assert_eq!(order(0), [1, 3]);
        assert_eq!(order(1), [2, 0]);
    }

    #[test]
    fn the_preview_takes_clusters_in_turn_up_to_the_budget() {
        // cluster 0: images 0..4 (central first); cluster 1: image 10
        let s: Vec<SampleEmbedding> = (0..5)
            .map(|i| sample(i, 0, i as f32))
            .chain([sample(10, 1, 0.0)])
            .collect();
        let members: Vec<&SampleEmbedding> = s.iter().collect();
        let clusters = by_cluster(&members);
        let mut three: Vec<i64> = previewed(&clusters, 3).into_iter().collect();
        three.sort_unstable();
        assert_eq!(three, [0, 1, 10]);
        assert_eq!(previewed(&clusters, 100).len(), 6);
        assert!(previewed(&clusters, 0).is_empty());
    }

    #[test]
    fn the_prototype_needs_a_map() {
        assert!(prototype(&[]).is_none());
        let m = (1, 2, vec![1.0, -1.0]);
        let uri = prototype(&[&m, &m]).unwrap();
        assert!(uri.starts_with("data:image/png;base64,"));
    }
}

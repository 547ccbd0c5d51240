//! The stage's view of the relevance dataset: per class, its images with their map at the
//! analysis grid, the prediction and the class logit before any change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use spray_store::relevance::{self as rel, ReadOptions};

use crate::{Result, VerifyError};

/// One image of a class.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub image_index: usize,
    /// Its relevance map sum-pooled to the analysis grid (g × g, row-major).
    pub map: Vec<f32>,
    pub predicted: i32,
    /// Its class's logit, before any change.
    pub class_logit: f32,
    /// The mean of its file's two JPEG block statistics (`spray_dataset::block_stats`), where
    /// the relevance dataset stores them.
    pub blockiness: Option<f32>,
    /// The quantiser scale of the quality its file was last saved at
    /// (`spray_store::relevance::quantiser_scale`; 0 for a lossless file).
    pub quantiser_scale: Option<f32>,
}

/// Per class, its members in image order.
pub type MembersByClass = BTreeMap<i32, Vec<Member>>;

/// Every finished part's rows, grouped by class; maps at grid `g` (pooled from the stored map
/// when the relevance stage did not store that grid). Also the class names.
pub fn read_members(relevance_dir: &Path, g: usize) -> Result<(MembersByClass, Vec<String>)> {
    let (manifest, parts) = rel::finished_parts(relevance_dir)?;
    let from_map = !manifest.layout.grids.contains(&g);
    let options = ReadOptions {
        grids: if from_map { Vec::new() } else { vec![g] },
        map: from_map,
        images: false,
        thumbnails: false,
        concept: false,
        colour: false,
        compression: manifest.layout.compression_stats,
        logits: false,
    };
    let mut by_class = MembersByClass::new();
    for part in &parts {
        for r in rel::read_part(part, &options)? {
            let map = if from_map {
                let (mh, mw, m) = r.map.as_ref().ok_or_else(|| VerifyError::NoMaps {
                    dir: relevance_dir.display().to_string(),
                    grid: g,
                })?;
                rel::sum_pool(m, *mh as usize, *mw as usize, g, g)
            } else {
                r.grids[0].clone()
            };
            by_class.entry(r.class_index).or_default().push(Member {
                image_index: r.image_index as usize,
                map,
                predicted: r.predicted_class,
                class_logit: r.target_logit,
                blockiness: r
                    .compression
                    .as_deref()
                    .and_then(|b| b.get(..rel::QUALITY_AT))
                    .map(|b| b.iter().sum::<f32>() / b.len() as f32),
                quantiser_scale: r
                    .compression
                    .as_deref()
                    .and_then(|b| b.get(rel::QUALITY_AT))
                    .map(|&q| rel::quantiser_scale(q)),
            });
        }
    }
    for members in by_class.values_mut() {
        members.sort_by_key(|m| m.image_index);
    }
    Ok((by_class, manifest.classes))
}

/// Images' logits (every class) by image index, as the relevance stage stored them.
pub type KnownLogits = BTreeMap<usize, Vec<f32>>;

/// The relevance stage's logits of the images `wanted`, where its parts store them
/// (`RelevanceLayout::logits`: the same model's forward pass on the same input); an image
/// without them (parts written before the column existed) is absent, and is scored.
pub fn read_logits(relevance_dir: &Path, wanted: &BTreeSet<usize>) -> Result<KnownLogits> {
    let (_, parts) = rel::finished_parts(relevance_dir)?;
    let options = ReadOptions {
        logits: true,
        ..ReadOptions::default()
    };
    let mut known = KnownLogits::new();
    for part in &parts {
        for r in rel::read_part(part, &options)? {
            let index = r.image_index as usize;
            if let (true, Some(logits)) = (wanted.contains(&index), r.logits) {
                known.entry(index).or_insert(logits);
            }
        }
    }
    Ok(known)
}

/// Every `step`-th of `items` so that at most `limit` remain, in order (deterministic).
pub fn spread<T: Copy>(items: &[T], limit: usize) -> Vec<T> {
    if items.len() <= limit || limit == 0 {
        return items.to_vec();
    }
    (0..limit).map(|i| items[i * items.len() / limit]).collect()
}

/// The recipients of a class's transplants, in two parts: up to `first` images of the classes
/// other than `class` (spread over the image order; 0: every one), then up to `total − first`
/// more of the others (spread over what is left), where `total` is larger. Why in two parts:
/// every row is measured on the first (`transplant_images`), and only a row whose verdict it
/// leaves open goes on to the later ones (`verdict_images`), so the first part is the same
/// whether or not there are later ones.
pub fn recipients(
    by_class: &MembersByClass,
    class: i32,
    (first, total): (usize, usize),
) -> (Vec<usize>, Vec<usize>) {
    let mut others: Vec<usize> = by_class
        .iter()
        .filter(|(c, _)| **c != class)
        .flat_map(|(_, rows)| rows.iter().map(|m| m.image_index))
        .collect();
    others.sort_unstable();
    others.dedup();
    let chosen = spread(&others, first);
    let mut later = Vec::new();
    if first > 0 && total > first && chosen.len() < others.len() {
        let taken: std::collections::HashSet<usize> = chosen.iter().copied().collect();
        let left: Vec<usize> = others.into_iter().filter(|i| !taken.contains(i)).collect();
        later = spread(&left, total - first);
    }
    (chosen, later)
}

/// Which `m` of `n` recipients a group is measured on first, and the others, each ascending:
/// the first `m` of [`prefix_spread`]'s order. Why not the first `m`: images come sorted by
/// class, and a plain prefix would be one or two classes.
pub fn first_look(n: usize, m: usize) -> (Vec<usize>, Vec<usize>) {
    if m == 0 {
        return (Vec::new(), (0..n).collect());
    }
    // The first of `looks`, and all the others together.
    let mut looks = looks(n, m).into_iter();
    let first = looks.next().unwrap_or_default();
    let mut later: Vec<usize> = looks.flatten().collect();
    later.sort_unstable();
    (first, later)
}

/// The recipient positions a group is measured on, look by look: the first `m` of
/// [`prefix_spread`]'s order, then up to 3m, 9m, … of it, the last look ending at `n`; each
/// look ascending. One look of all when `m` is 0. Each look extends the one before it, so a
/// group stopped at any look was measured on a spread prefix (`first_look`'s first part is
/// the first look).
pub fn looks(n: usize, m: usize) -> Vec<Vec<usize>> {
    let order = prefix_spread(&(0..n).collect::<Vec<_>>());
    let mut out = Vec::new();
    let (mut start, mut end) = (0, if m == 0 { n } else { m.min(n) });
    loop {
        let mut look = order[start..end].to_vec();
        look.sort_unstable();
        out.push(look);
        if end == n {
            return out;
        }
        start = end;
        end = end.saturating_mul(3).min(n);
    }
}

/// The later recipient positions `first..total`, look by look, for a row that goes on past
/// the first `first` (`verdict_images`): each look three times the recipients so far, the
/// last ending at `total`, taken in [`prefix_spread`]'s order of the later positions (they
/// are sorted by image, so a plain run of them would be one or two classes); each look
/// ascending.
pub fn later_looks(first: usize, total: usize) -> Vec<Vec<usize>> {
    let order = prefix_spread(&(first..total.max(first)).collect::<Vec<_>>());
    let mut out = Vec::new();
    let (mut taken, mut sofar) = (0, first.max(1));
    while taken < order.len() {
        // Three times the recipients so far, as a count of later positions.
        let end = (sofar.saturating_mul(3) - first).clamp(taken + 1, order.len());
        let mut look = order[taken..end].to_vec();
        look.sort_unstable();
        out.push(look);
        sofar = first + end;
        taken = end;
    }
    out
}

/// `items` reordered so that every prefix is spread over the whole list: position i goes
/// where its index with the bits reversed sorts (0, n/2, n/4, 3n/4, …).
pub fn prefix_spread<T: Copy>(items: &[T]) -> Vec<T> {
    let n = items.len();
    if n <= 2 {
        return items.to_vec();
    }
    let bits = usize::BITS - (n - 1).leading_zeros();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| i.reverse_bits() >> (usize::BITS - bits));
    order.into_iter().map(|i| items[i]).collect()
}

/// The name of class `class`, or `class <i>` when the list does not have it.
pub fn class_name(classes: &[String], class: i32) -> String {
    usize::try_from(class)
        .ok()
        .and_then(|c| classes.get(c))
        .cloned()
        .unwrap_or_else(|| format!("class {class}"))
}

/// A member with only its image index (tests of what depends on nothing else).
#[cfg(test)]
pub(crate) fn bare_member(image_index: usize) -> Member {
    Member {
        image_index,
        map: vec![],
        predicted: 0,
        class_logit: 0.0,
        blockiness: None,
        quantiser_scale: None,
    }
}

/// Two classes for a test of a class's evidence: image i (scored `logits[i]`) is class 0 below
/// `class0`, class 1 from there on, each predicted as its class (asserted), with `map(i)` as its
/// map; of class 0, the first `group` images form relevance cluster 0 and the others cluster 1
/// (the same sides split).
#[cfg(test)]
pub(crate) fn two_classes_of(
    logits: &[Vec<f32>],
    (class0, group): (usize, usize),
    map: impl Fn(usize) -> Vec<f32>,
) -> (MembersByClass, crate::groups::AnalysedGroups) {
    let mut by_class = MembersByClass::new();
    let mut analysed = crate::groups::AnalysedGroups::default();
    for (i, l) in logits.iter().enumerate() {
        let class = i32::from(i >= class0);
        assert_eq!(
            crate::scorer::predicted(l) as i32,
            class,
            "image {i}: {l:?}"
        );
        by_class.entry(class).or_default().push(Member {
            image_index: i,
            map: map(i),
            predicted: class,
            class_logit: l[class as usize],
            ..bare_member(i)
        });
        if i < class0 {
            let cluster = i32::from(i >= group);
            analysed.labels.insert(
                (0, i as i64, spray_store::FeatureSpace::Relevance),
                (cluster, cluster),
            );
        }
    }
    (by_class, analysed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(image_index: usize) -> Member {
        bare_member(image_index)
    }

    #[test]
    fn spread_keeps_order_and_the_limit() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&v, 4), vec![0, 2, 5, 7]);
        assert_eq!(spread(&v, 20), v);
        assert_eq!(spread(&v, 0), v);
    }

    #[test]
    fn every_prefix_is_spread_and_nothing_is_lost() {
        let v: Vec<usize> = (0..100).collect();
        let order = prefix_spread(&v);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, v);
        // The first ten reach every tenth of the list.
        let mut tenths: Vec<usize> = order[..10].iter().map(|i| i / 10).collect();
        tenths.sort_unstable();
        tenths.dedup();
        assert!(tenths.len() >= 8, "{:?}", &order[..10]);
        assert_eq!(prefix_spread(&[3, 4]), [3, 4]);
        // Two of eight: the first and the middle; all of them when m ≥ n.
        assert_eq!(first_look(8, 2), (vec![0, 4], vec![1, 2, 3, 5, 6, 7]));
        assert_eq!(first_look(3, 5), (vec![0, 1, 2], vec![]));
        // Looks of 2, then up to 6, then the rest; together every position once.
        let l = looks(8, 2);
        assert_eq!(l.iter().map(Vec::len).collect::<Vec<_>>(), [2, 4, 2]);
        assert_eq!(l[0], first_look(8, 2).0);
        let mut all: Vec<usize> = l.concat();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        assert_eq!(looks(5, 0), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(looks(3, 5), vec![vec![0, 1, 2]]);
        assert_eq!(looks(0, 3), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn later_looks_triple_the_recipients_so_far_spread_over_the_later_ones() {
        // 10 first, 100 in all: to 30 (20 more), to 90 (60 more), to 100 (the last 10).
        let l = later_looks(10, 100);
        assert_eq!(l.iter().map(Vec::len).collect::<Vec<_>>(), vec![20, 60, 10]);
        let mut all: Vec<usize> = l.concat();
        all.sort_unstable();
        assert_eq!(all, (10..100).collect::<Vec<_>>());
        // Spread: the first later look reaches across the later positions, not one run.
        assert!(l[0][0] < 20 && *l[0].last().unwrap() > 90);
        assert!(later_looks(10, 10).is_empty() && later_looks(10, 4).is_empty());
        // No first part: three to start with, then the rest.
        assert_eq!(
            later_looks(0, 5).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 2]
        );
    }

    #[test]
    fn recipients_are_the_other_classes_images_spread() {
        let mut by_class = MembersByClass::new();
        by_class.insert(0, (0..4).map(member).collect());
        by_class.insert(1, (4..8).map(member).collect());
        by_class.insert(2, (8..12).map(member).collect());
        assert_eq!(
            recipients(&by_class, 1, (100, 0)),
            (vec![0, 1, 2, 3, 8, 9, 10, 11], vec![])
        );
        assert_eq!(
            recipients(&by_class, 1, (4, 0)),
            (vec![0, 2, 8, 10], vec![])
        );
        // The same four first, then two of the four left, spread over them; at most every one.
        assert_eq!(
            recipients(&by_class, 1, (4, 6)),
            (vec![0, 2, 8, 10], vec![1, 9])
        );
        assert_eq!(
            recipients(&by_class, 1, (4, 100)),
            (vec![0, 2, 8, 10], vec![1, 3, 9, 11])
        );
        // No first part (every image already) or no larger total: nothing more.
        assert_eq!(
            recipients(&by_class, 1, (0, 6)),
            ((0..4).chain(8..12).collect(), vec![])
        );
        assert_eq!(recipients(&by_class, 1, (4, 4)).1, Vec::<usize>::new());
        assert_eq!(class_name(&["a".into()], 0), "a");
        assert_eq!(class_name(&["a".into()], 3), "class 3");
        assert_eq!(class_name(&["a".into()], -1), "class -1");
    }
}

//! The model-side evidence test ([`EvidenceTest::FeatureDirection`]): a group's direction in
//! the feature space of a concept layer — the difference of its mean activation and the rest
//! of the class's (a concept activation vector, Kim et al. 2018) — removed from the group's
//! activations (ablation, ClArC's projection, Anders et al. 2022) and transferred to other
//! classes' images (injection: each recipient takes a group member's coordinate along it).
//!
//! Why: the pixel-side tests need something that can be cut out and pasted — a region, a
//! colour. A pattern spread over the whole image, a text overlay, sensor noise has no region,
//! yet the network encodes it in its features wherever it is.
//!
//! Controls (the strongest counts, as in the pixel tests): the same axis with the coordinate
//! of those of the class's other images that lie farthest from the recipients' on it
//! (`farthest_rest`); the group's own push mirrored to the other side of the recipients'
//! level (a push of that size in either direction along an axis the class varies on turns
//! images into the class as well: measured on the scenario suite, a clean class whose
//! background is either darker or brighter than every other class's turned 53% of recipients
//! with its bright images' coordinate, and as many with the mirrored push); and a random
//! subset of the class's other images against the rest of them along their own direction
//! (what any split of the class does).

use std::collections::BTreeMap;

use spray_dataset::SplitMix64;
use spray_store::verify::Evidence;
use spray_store::{EvidenceTest, FeatureSpace};

use crate::evidence::{occlusion_of, Bench, ClassRef, Measured, Occlusion};
use crate::groups::TestedGroup;
use crate::images::Tensor;
use crate::members::{first_look, spread};
use crate::recipients::Recipients;
use crate::scorer::Offsets;
use crate::transplant::Transplanted;
use crate::Result;

/// The concept layer a group of `space` is tested at, of `layers` steerable ones: a concept
/// space's own layer, any other space's the last one listed (the defaults list the last
/// convolution last: every feature the logits read has passed through it).
pub fn layer_for(space: FeatureSpace, layers: usize) -> Option<usize> {
    match space.layer() {
        Some(i) if (i as usize) < layers => Some(i as usize),
        _ => layers.checked_sub(1),
    }
}

/// Activations of a class's members by (layer, member position), and of its recipients by
/// (layer, recipient position), computed once each.
#[derive(Default)]
pub struct ActivationCache {
    rows: BTreeMap<(usize, usize), Vec<f32>>,
    recipients: BTreeMap<(usize, usize), Vec<f32>>,
}

impl ActivationCache {
    /// The activations of the recipients at `positions` (copies), computing those not seen yet.
    fn recipients(
        &mut self,
        bench: &mut Bench<'_>,
        layer: usize,
        recipients: &Recipients,
        positions: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        filled(&mut self.recipients, layer, positions, |missing| {
            let tensors: Vec<Vec<f32>> = missing
                .iter()
                .map(|&p| recipients.tensor(p).to_vec())
                .collect();
            bench.scorer.activations(layer, &tensors)
        })
    }

    /// The activations of members `rows` at `layer` (copies), computing those not seen yet.
    fn get(
        &mut self,
        bench: &mut Bench<'_>,
        class: &ClassRef<'_>,
        layer: usize,
        rows: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        filled(&mut self.rows, layer, rows, |missing| {
            let images: Vec<usize> = missing
                .iter()
                .map(|&i| class.members[i].image_index)
                .collect();
            let tensors = owned(bench.images.tensors(&images)?);
            bench.scorer.activations(layer, &tensors)
        })
    }
}

/// Shared tensors copied into the owned batch the scorer's passes take.
fn owned(tensors: Vec<Tensor>) -> Vec<Vec<f32>> {
    tensors.iter().map(|t| t.to_vec()).collect()
}

/// The values of `keys` at `layer` in `cache` (copies), those not there yet computed by
/// `compute` (given the missing keys, in order) at once.
fn filled(
    cache: &mut BTreeMap<(usize, usize), Vec<f32>>,
    layer: usize,
    keys: &[usize],
    compute: impl FnOnce(&[usize]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<Vec<f32>>> {
    let missing: Vec<usize> = keys
        .iter()
        .copied()
        .filter(|&k| !cache.contains_key(&(layer, k)))
        .collect();
    if !missing.is_empty() {
        for (k, a) in missing.iter().zip(compute(&missing)?) {
            cache.insert((layer, *k), a);
        }
    }
    Ok(keys.iter().map(|&k| cache[&(layer, k)].clone()).collect())
}

/// The mean of equally long rows (accumulated in f64).
fn mean(rows: &[&[f32]]) -> Vec<f64> {
    let d = rows.first().map_or(0, |r| r.len());
    let mut sum = vec![0.0f64; d];
    for row in rows {
        for (s, &v) in sum.iter_mut().zip(row.iter()) {
            *s += v as f64;
        }
    }
    let n = rows.len().max(1) as f64;
    sum.iter_mut().for_each(|s| *s /= n);
    sum
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// The group's direction and its control's.
#[derive(Debug, Clone, PartialEq)]
pub struct Directions {
    /// The group's mean minus the rest's.
    pub group: Vec<f32>,
    /// The rest's mean.
    pub rest_mean: Vec<f64>,
    /// A random subset of the rest (as many as the group, at most half the rest; positions
    /// in the rest's rows) and its direction, its mean minus the rest of the rest's; `None`
    /// when the rest is too small or the subset does not differ.
    pub subset: Option<(Vec<usize>, Vec<f32>)>,
}

/// The directions of a group (`group`, `rest`: rows of activations). `None` when there is
/// no rest or the group does not differ from it.
pub fn directions(group: &[&[f32]], rest: &[&[f32]], seed: u64) -> Option<Directions> {
    if group.is_empty() || rest.is_empty() {
        return None;
    }
    let difference = |a: &[&[f32]], b: &[&[f32]]| -> Vec<f32> {
        mean(a)
            .iter()
            .zip(mean(b))
            .map(|(x, y)| (x - y) as f32)
            .collect()
    };
    let group_direction = difference(group, rest);
    let size = norm(&group_direction);
    if size == 0.0 || !size.is_finite() {
        return None;
    }
    let m = group.len().min(rest.len() / 2);
    let subset = (m >= 1)
        .then(|| {
            let mut rng = SplitMix64(seed ^ 0xD1B5_4A32_D192_ED03);
            let mut order: Vec<usize> = (0..rest.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let pick = |at: &[usize]| -> Vec<&[f32]> { at.iter().map(|&i| rest[i]).collect() };
            let direction = difference(&pick(&order[..m]), &pick(&order[m..]));
            let mut chosen = order[..m].to_vec();
            chosen.sort_unstable();
            (chosen, direction)
        })
        .filter(|(_, d)| norm(d) > 0.0);
    Some(Directions {
        group: group_direction,
        rest_mean: mean(rest),
        subset,
    })
}

/// The control's donors on the group's axis: the class's other images whose coordinate lies
/// farthest from the recipients' mean coordinate (`level`), on either side, as many as the
/// group (at most half of them). Why not any of them: a group that is one of a class's natural
/// modes (its object at one of two places, a bright or a dark background where other classes
/// have neither) shares its axis with the class's other modes, whose coordinates turn
/// recipients as well when the model reads the axis as the class — the test must see that; a
/// shortcut's artifact is absent from the rest of the class as from the recipients, so even
/// the rest's farthest coordinates stay near the recipients' own.
fn farthest_rest<'a>(
    rest: &'a [Vec<f32>],
    axis: &[f64],
    level: f64,
    group_size: usize,
) -> Vec<&'a [f32]> {
    let mut by_distance: Vec<(f64, usize)> = rest
        .iter()
        .enumerate()
        .map(|(i, a)| ((dot(a, axis) - level).abs(), i))
        .collect();
    by_distance.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let k = group_size.min(rest.len().div_ceil(2)).max(1);
    let mut chosen: Vec<usize> = by_distance[..k.min(rest.len())]
        .iter()
        .map(|&(_, i)| i)
        .collect();
    chosen.sort_unstable();
    chosen.iter().map(|&i| rest[i].as_slice()).collect()
}

/// `direction` scaled to length 1.
fn unit(direction: &[f32]) -> Vec<f64> {
    let size = norm(direction).max(1e-30);
    direction.iter().map(|&x| x as f64 / size).collect()
}

fn dot(a: &[f32], u: &[f64]) -> f64 {
    a.iter().zip(u).map(|(&x, y)| x as f64 * y).sum()
}

/// The offset that gives `recipient` the coordinate of `donor` along the unit axis `u` and
/// leaves everything orthogonal to it: (⟨donor − recipient, u⟩) u. Why a coordinate and not
/// the whole direction added: the donor's own value keeps the push at a size the class's
/// images really have; a direction added at full length moves activations where no image
/// goes, and such a push turns images into some class whatever its meaning (measured on the
/// scenario suite: a clean class's two modes each turned ≥ 0.9 of other classes' images).
pub fn transfer_offset(recipient: &[f32], donor: &[f32], u: &[f64]) -> Vec<f32> {
    offset_to(recipient, dot(donor, u), u)
}

/// The offset that gives `recipient` the coordinate `target` along the unit axis `u`.
fn offset_to(recipient: &[f32], target: f64, u: &[f64]) -> Vec<f32> {
    let along = target - dot(recipient, u);
    u.iter().map(|x| (along * x) as f32).collect()
}

/// Per row, the offset that removes its component along `direction` relative to the rest's
/// mean: −((a − μ_rest)·d̂) d̂, which moves each image to the rest's level along d and leaves
/// everything orthogonal to it.
pub fn ablation_offsets(rows: &[&[f32]], rest_mean: &[f64], direction: &[f32]) -> Vec<Vec<f32>> {
    let unit = unit(direction);
    rows.iter()
        .map(|a| {
            let along: f64 = a
                .iter()
                .zip(rest_mean)
                .zip(&unit)
                .map(|((&x, m), u)| (x as f64 - m) * u)
                .sum();
            unit.iter().map(|u| (-along * u) as f32).collect()
        })
        .collect()
}

/// The group's row of the model-side test at `layer`, or `None` when the group's direction is
/// undefined (no rest, no difference).
pub(crate) fn test_group(
    bench: &mut Bench<'_>,
    cache: &mut ActivationCache,
    (class, group, rest_rows): (&ClassRef<'_>, &TestedGroup, &[usize]),
    (layer, node): (usize, &str),
    recipients: &Recipients,
) -> Result<Option<Evidence>> {
    let members = class.members;
    let rest = group.rest(members.len());
    // At most `transplant_images` of each side make the means (spread over the class), so a
    // class of thousands costs what a class of hundreds does.
    let limit = bench.settings.transplant_images.max(1);
    let group_rows = spread(&group.members, limit);
    let rest_for_mean = spread(&rest, limit);
    let seed = bench.settings.seed ^ ((class.index as u64) << 32) ^ group_rows.len() as u64;
    let group_acts = cache.get(bench, class, layer, &group_rows)?;
    let rest_acts = cache.get(bench, class, layer, &rest_for_mean)?;
    // The rest's images whose ablation is measured (at most `occlusion_images`).
    let cap = bench.settings.occlusion_images;
    let shown_rows = spread(rest_rows, cap);
    let shown_acts = cache.get(bench, class, layer, &shown_rows)?;
    let Some(directions) = directions(&view(&group_acts), &view(&rest_acts), seed) else {
        return Ok(None);
    };
    // Ablation: the group's images at the rest's level along the direction; the class's
    // other images likewise (they should barely move: they are the level).
    let own = ablate(
        bench,
        (class, layer),
        &group_rows,
        &group_acts,
        &directions,
        cap,
    )?;
    let others = ablate(
        bench,
        (class, layer),
        &shown_rows,
        &shown_acts,
        &directions,
        cap,
    )?;

    // Injection: each recipient takes a donor's coordinate along the group's direction —
    // a group member's; the controls: one of the rest's farthest from the recipients on the
    // same axis, the push mirrored, and a random subset's member's along the subset's own
    // direction.
    let k = class.index as usize;
    let group_axis = unit(&directions.group);
    let subset = directions.subset.as_ref().map(|(chosen, d)| {
        let donors: Vec<&[f32]> = chosen.iter().map(|&i| rest_acts[i].as_slice()).collect();
        (donors, unit(d))
    });
    let n = recipients.first_count();
    let (first, later) = match bench.settings.first_look {
        0 => (Vec::from_iter(0..n), Vec::new()),
        m => first_look(n, m),
    };
    // The recipients' level on the axis: their mean coordinate (over the first look, which
    // every group measures).
    let level = {
        let own = cache.recipients(bench, layer, recipients, &first)?;
        own.iter().map(|r| dot(r, &group_axis)).sum::<f64>() / own.len().max(1) as f64
    };
    let transfers = transfers(
        (&group_acts, &rest_acts),
        &group_axis,
        subset.as_ref(),
        level,
    );
    let mut measured = Transplanted::new(n, transfers.len() - 1);
    for (step, positions) in [first, later].iter().enumerate() {
        if positions.is_empty()
            || (step == 1
                && !measured
                    .rates(recipients, k)
                    .could_flag(spray_store::ranking::FLAG_SPECIFIC_EFFECT))
        {
            continue;
        }
        inject(
            bench,
            cache,
            (layer, level),
            recipients,
            positions,
            &transfers,
            &mut measured,
        )?;
    }
    Ok(Some(class.row(
        group,
        bench.grid,
        Measured {
            test: EvidenceTest::FeatureDirection,
            region: (format!("direction at {node}"), 0),
            occlusion: (own, others),
            rates: measured.rates(recipients, k),
            pictures: None,
        },
    )))
}

/// The group's transfer, then its controls' (the module's doc): the rest farthest along the
/// axis, the group's push mirrored, the random subset along its own direction.
fn transfers<'a>(
    (group_acts, rest_acts): (&'a [Vec<f32>], &'a [Vec<f32>]),
    group_axis: &'a [f64],
    subset: Option<&'a (Vec<&'a [f32]>, Vec<f64>)>,
    level: f64,
) -> Vec<Transfer<'a>> {
    let along = |donors: Vec<&'a [f32]>, axis: &'a [f64], mirrored: bool| Transfer {
        donors,
        axis,
        mirrored,
    };
    let mut all = vec![
        along(view(group_acts), group_axis, false),
        along(
            farthest_rest(rest_acts, group_axis, level, group_acts.len()),
            group_axis,
            false,
        ),
        along(view(group_acts), group_axis, true),
    ];
    all.extend(subset.map(|(donors, axis)| along(donors.clone(), axis, false)));
    all
}

/// Members `rows` (activations `acts`; at most `cap` of them) scored with their component
/// along the group's direction moved to the rest's level.
fn ablate(
    bench: &mut Bench<'_>,
    (class, layer): (&ClassRef<'_>, usize),
    rows: &[usize],
    acts: &[Vec<f32>],
    directions: &Directions,
    cap: usize,
) -> Result<Occlusion> {
    // At most `cap` of them, spread over the rows.
    let at = spread(&Vec::from_iter(0..rows.len()), cap);
    let acts: Vec<&[f32]> = at.iter().map(|&p| acts[p].as_slice()).collect();
    let rows: Vec<usize> = at.iter().map(|&p| rows[p]).collect();
    let offsets = ablation_offsets(&acts, &directions.rest_mean, &directions.group);
    let images: Vec<usize> = rows.iter().map(|&i| class.members[i].image_index).collect();
    let tensors = owned(bench.images.tensors(&images)?);
    let after = bench
        .scorer
        .steered_logits(layer, &tensors, Offsets::PerTensor(&offsets))?;
    Ok(occlusion_of(class, &rows, &after))
}

/// The recipients at `positions` scored after each transfer (the group's first, then the
/// controls'), recorded in `measured`.
fn inject(
    bench: &mut Bench<'_>,
    cache: &mut ActivationCache,
    (layer, level): (usize, f64),
    recipients: &Recipients,
    positions: &[usize],
    transfers: &[Transfer<'_>],
    measured: &mut Transplanted,
) -> Result<()> {
    recipients.score(&mut *bench.scorer, positions)?;
    let tensors: Vec<Vec<f32>> = positions
        .iter()
        .map(|&p| recipients.tensor(p).to_vec())
        .collect();
    let own = cache.recipients(bench, layer, recipients, positions)?;
    for (t, transfer) in transfers.iter().enumerate() {
        let offsets: Vec<Vec<f32>> = positions
            .iter()
            .zip(&own)
            .map(|(&p, r)| transfer.offset(r, p, level))
            .collect();
        let logits = bench
            .scorer
            .steered_logits(layer, &tensors, Offsets::PerTensor(&offsets))?;
        measured.record(t.checked_sub(1), positions, logits);
    }
    Ok(())
}

/// Rows as slices.
fn view(rows: &[Vec<f32>]) -> Vec<&[f32]> {
    rows.iter().map(Vec::as_slice).collect()
}

/// One injection: recipient p takes the coordinate of donor p mod |donors| along `axis`, or,
/// `mirrored`, that coordinate reflected about the recipients' level (the same push to the
/// other side).
struct Transfer<'a> {
    donors: Vec<&'a [f32]>,
    axis: &'a [f64],
    mirrored: bool,
}

impl Transfer<'_> {
    fn offset(&self, recipient: &[f32], position: usize, level: f64) -> Vec<f32> {
        let donor = dot(self.donors[position % self.donors.len()], self.axis);
        let target = if self.mirrored {
            2.0 * level - donor
        } else {
            donor
        };
        offset_to(recipient, target, self.axis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_direction_is_the_difference_of_means_and_the_subset_splits_the_rest() {
        let g: Vec<&[f32]> = vec![&[3.0, 0.0], &[5.0, 0.0]];
        let r: Vec<&[f32]> = vec![&[0.0, 1.0], &[0.0, 3.0], &[0.0, 2.0], &[0.0, 5.0]];
        let d = directions(&g, &r, 7).unwrap();
        assert_eq!(d.group, vec![4.0, -2.75]);
        assert_eq!(d.rest_mean, vec![0.0, 2.75]);
        // Two of the rest (as many as the group, at most half the rest) against the other
        // two: a direction along the rest's own variation (axis 1) only.
        let (chosen, subset) = d.subset.as_ref().unwrap();
        assert_eq!(chosen.len(), 2);
        assert_eq!(subset[0], 0.0);
        // Seeded: the same again.
        assert_eq!(directions(&g, &r, 7).unwrap(), d);
        // No rest, or no difference: no test; a rest of one: no subset.
        assert!(directions(&g, &[], 7).is_none());
        assert!(directions(&r, &r, 7).is_none());
        assert!(directions(&g, &r[..1], 7).unwrap().subset.is_none());
    }

    #[test]
    fn the_control_donors_are_the_rest_farthest_from_the_recipients_on_the_axis() {
        let rest = vec![vec![1.0], vec![5.0], vec![-6.0], vec![3.0], vec![0.0]];
        let axis = [1.0];
        let far = |level: f64, k: usize| -> Vec<f32> {
            farthest_rest(&rest, &axis, level, k)
                .iter()
                .map(|r| r[0])
                .collect()
        };
        // From a level of 0: −6 and 5 (either side), in the rest's order.
        assert_eq!(far(0.0, 2), [5.0, -6.0]);
        // From a level of 4: −6, then 0.
        assert_eq!(far(4.0, 2), [-6.0, 0.0]);
        // At most half the rest (rounded up), at least one.
        assert_eq!(far(0.0, 9).len(), 3);
        assert_eq!(far(0.0, 0).len(), 1);
    }

    #[test]
    fn a_transfer_sets_the_coordinate_along_the_axis_only() {
        let u = unit(&[3.0, 4.0]);
        // The donor's coordinate along u is 5, the recipient's 0 (orthogonal to u).
        let offset = transfer_offset(&[4.0, -3.0], &[3.0, 4.0], &u);
        assert!((offset[0] - 3.0).abs() < 1e-6 && (offset[1] - 4.0).abs() < 1e-6);
        let moved: Vec<f32> = [4.0f32, -3.0]
            .iter()
            .zip(&offset)
            .map(|(a, b)| a + b)
            .collect();
        assert!((dot(&moved, &u) - 5.0).abs() < 1e-6);
    }

    #[test]
    fn ablation_moves_each_row_to_the_rest_level_along_the_direction_only() {
        let rows: Vec<&[f32]> = vec![&[4.0, 1.0], &[2.0, 5.0]];
        let offsets = ablation_offsets(&rows, &[0.0, 0.0], &[2.0, 0.0]);
        assert_eq!(offsets, vec![vec![-4.0, 0.0], vec![-2.0, 0.0]]);
        // Relative to a rest mean of 1 on axis 0: each row ends at 1 there.
        let offsets = ablation_offsets(&rows, &[1.0, 0.0], &[1.0, 0.0]);
        assert_eq!(offsets, vec![vec![-3.0, 0.0], vec![-1.0, 0.0]]);
    }

    #[test]
    fn a_concept_group_is_tested_at_its_layer_every_other_at_the_last() {
        assert_eq!(layer_for(FeatureSpace::Concept(0), 2), Some(0));
        assert_eq!(layer_for(FeatureSpace::Concept(5), 2), Some(1));
        assert_eq!(layer_for(FeatureSpace::Relevance, 2), Some(1));
        assert_eq!(layer_for(FeatureSpace::Colour, 0), None);
    }
}

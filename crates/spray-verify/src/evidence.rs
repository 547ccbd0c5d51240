//! Measuring a tested group, whatever its test: occlusion (what the group's images lose) and
//! transplant (what other classes' images gain) with the test's [`Plan`], against the control
//! (the same from the class's other images); the stronger control counts.

use spray_store::verify::Evidence;
use spray_store::GroupId;

use crate::groups::{class_groups, worth_testing, GroupLabels, TestedGroup};
use crate::images::ImageSource;
use crate::members::{recipients, spread, Member, MembersByClass};
use crate::perturb::channel_stats;
use crate::probe::{self, Apply, Plan, ProbeInput};
use crate::region;
use crate::scorer::{predicted, Scorer};
use crate::settings::VerifySettings;
use crate::Result;

/// Where a tested group's before/after pictures go (`examples::KINDS` order); returns their
/// paths as the evidence row lists them.
pub trait PictureSink {
    fn write(&self, group: GroupId, pictures: &[Vec<f32>]) -> Result<Vec<String>>;
}

/// Everything a class's tests use: the model, the images, the settings, and the input's
/// geometry.
pub struct Bench<'a> {
    pub scorer: &'a mut dyn Scorer,
    pub images: &'a dyn ImageSource,
    pub settings: &'a VerifySettings,
    /// The analysis grid (regions are sets of its cells).
    pub grid: usize,
    /// Input height and width.
    pub size: [usize; 2],
    /// Per channel, the values a pixel can take (`images::pixel_bounds`).
    pub bounds: [(f32, f32); 3],
    pub pictures: &'a dyn PictureSink,
}

/// Other classes' images, prepared and scored once per class: every test's recipients.
struct Recipients {
    tensors: Vec<Vec<f32>>,
    before: Vec<Vec<f32>>,
}

/// The evidence of one class: every group worth testing (`groups::worth_testing`), tested by
/// its space's evidence test, one row per measured group.
pub fn class_evidence(
    bench: &mut Bench<'_>,
    (class, name): (i32, &str),
    by_class: &MembersByClass,
    labels: &GroupLabels,
) -> Result<Vec<Evidence>> {
    let Some(members) = by_class.get(&class) else {
        return Ok(Vec::new());
    };
    let g = bench.grid;
    let groups = class_groups(class, members, labels);
    let class_mean = {
        let maps: Vec<&[f32]> = members.iter().map(|m| m.map.as_slice()).collect();
        region::mean(&maps, g * g)
    };
    let images = recipients(by_class, class, bench.settings.transplant_images);
    let tensors = bench.images.tensors(&images)?;
    let before = bench.scorer.logits(&tensors)?;
    let recipients = Recipients { tensors, before };
    let mut evidence = Vec::new();
    for group in &groups {
        if !worth_testing(group, members.len(), bench.settings) {
            continue;
        }
        let Some(test) = group.id.space.spec().test else {
            continue;
        };
        let rest: Vec<usize> = (0..members.len())
            .filter(|i| !group.members.contains(i))
            .collect();
        let rest_rows = spread(&rest, bench.settings.transplant_images);
        let input = ProbeInput {
            members,
            class_mean: &class_mean,
            group: &group.members,
            rest: &rest,
            rest_rows: &rest_rows,
            grid: g,
            size: bench.size,
            settings: bench.settings,
        };
        let Some(plan) = probe::plan(test, &input) else {
            continue;
        };
        let class = ClassRef {
            index: class,
            name,
            members,
        };
        evidence.push(test_group(
            bench,
            &class,
            group,
            &rest_rows,
            &plan,
            &recipients,
        )?);
    }
    Ok(evidence)
}

/// The class under test.
struct ClassRef<'a> {
    index: i32,
    name: &'a str,
    members: &'a [Member],
}

/// What occluding a set of the class's images did.
struct Occlusion {
    /// Mean relative drop of the class logit.
    drop: f64,
    /// Share predicted as the class before and after.
    accuracy_before: f64,
    accuracy_after: f64,
}

fn relative_drop(before: f32, after: f32) -> f64 {
    (before - after) as f64 / (before.abs() as f64).max(1e-6)
}

/// Score the occluded images of members `rows` against their logits before.
fn occlusion(
    scorer: &mut dyn Scorer,
    class: &ClassRef<'_>,
    rows: &[usize],
    occluded: &[Vec<f32>],
) -> Result<Occlusion> {
    let after = scorer.logits(occluded)?;
    let k = class.index as usize;
    let n = rows.len().max(1) as f64;
    let members = class.members;
    let drop = rows
        .iter()
        .zip(&after)
        .map(|(&i, a)| relative_drop(members[i].class_logit, a[k]))
        .sum::<f64>()
        / n;
    let accuracy_before = rows
        .iter()
        .filter(|&&i| members[i].predicted == class.index)
        .count() as f64
        / n;
    let accuracy_after = after.iter().filter(|a| predicted(a) == k).count() as f64 / n;
    Ok(Occlusion {
        drop,
        accuracy_before,
        accuracy_after,
    })
}

/// Share of the `eligible` recipients (not the class before) that the class's logit wins
/// after.
fn flip_rate(after: &[Vec<f32>], eligible: &[usize], k: usize) -> f64 {
    eligible
        .iter()
        .filter(|&&j| predicted(&after[j]) == k)
        .count() as f64
        / eligible.len().max(1) as f64
}

/// One group's evidence row.
fn test_group(
    bench: &mut Bench<'_>,
    class: &ClassRef<'_>,
    group: &TestedGroup,
    rest_rows: &[usize],
    plan: &Plan,
    recipients: &Recipients,
) -> Result<Evidence> {
    let members = class.members;
    let image =
        |rows: &[usize]| -> Vec<usize> { rows.iter().map(|&i| members[i].image_index).collect() };
    // The group's images, decoded once: occluded, pictured and given from; then (up to
    // transplant_images of) the rest's, the control.
    let donors = bench.images.tensors(&image(&group.members))?;
    let rest = bench.images.tensors(&image(rest_rows))?;
    let donor_colours: Vec<[(f32, f32); 3]> = donors.iter().map(|t| channel_stats(t)).collect();
    let rest_colours: Vec<[(f32, f32); 3]> = rest.iter().map(|t| channel_stats(t)).collect();
    let apply = Apply {
        width: bench.size[1],
        fill: bench.settings.fill,
        seed: bench.settings.seed,
        bounds: &bench.bounds,
    };

    let covered = apply.take_away(&donors, &plan.group, &group.members, &rest_colours, 0);
    let own = occlusion(bench.scorer, class, &group.members, &covered)?;
    let covered_rest = apply.take_away(&rest, &plan.control, rest_rows, &rest_colours, 1);
    let others = occlusion(bench.scorer, class, rest_rows, &covered_rest)?;

    let pasted = apply.give(&recipients.tensors, &donors, &plan.group, &donor_colours);
    // Pictures for the report: the first member before and after occlusion, the first
    // recipient before and after the transplant.
    let mut pictures = vec![donors[0].clone(), covered[0].clone()];
    if let (Some(before), Some(after)) = (recipients.tensors.first(), pasted.first()) {
        pictures.push(before.clone());
        pictures.push(after.clone());
    }
    let examples = bench.pictures.write(group.id, &pictures)?;

    let after = bench.scorer.logits(&pasted)?;
    let k = class.index as usize;
    let n = recipients.tensors.len();
    let gain = recipients
        .before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a[k] - b[k]) as f64)
        .sum::<f64>()
        / n.max(1) as f64;
    let eligible: Vec<usize> = (0..n)
        .filter(|&j| predicted(&recipients.before[j]) != k)
        .collect();
    // The control: the same region (or colours) from the class's other images. A region
    // that shows the class's object flips recipients whichever member it comes from; a
    // shortcut the group shares flips them only when it comes from the group.
    let mut control_rate = 0.0f64;
    if !rest.is_empty() {
        for carrier in std::iter::once(&plan.control).chain(plan.second_control.as_ref()) {
            let pasted_rest = apply.give(&recipients.tensors, &rest, carrier, &rest_colours);
            let after_rest = bench.scorer.logits(&pasted_rest)?;
            control_rate = control_rate.max(flip_rate(&after_rest, &eligible, k));
        }
    }
    Ok(Evidence {
        class_index: class.index,
        class_name: class.name.to_string(),
        space: group.id.space,
        level: group.id.level,
        cluster: group.id.label,
        size: group.members.len(),
        share: group.members.len() as f64 / members.len() as f64,
        region: plan.region.clone(),
        region_cells: plan.region_cells,
        grid: bench.grid,
        occlusion_drop: own.drop,
        occlusion_drop_rest: others.drop,
        accuracy_before: own.accuracy_before,
        accuracy_after: own.accuracy_after,
        transplant_logit_gain: gain,
        transplant_flip_rate: flip_rate(&after, &eligible, k),
        transplant_flip_rate_rest: control_rate,
        transplant_images: n,
        examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::fake::LinearModel;
    use spray_store::FeatureSpace;

    const H: usize = 4;
    const W: usize = 4;

    /// A 3 × 4 × 4 tensor: `value` on channel `c` in quadrant (`r`, `q`) of the 2 × 2 grid,
    /// over a background of `ground` on channel 2.
    fn image(marks: &[(usize, usize, usize, f32)], ground: f32) -> Vec<f32> {
        let mut t = vec![0.0; 3 * H * W];
        t[2 * H * W..].iter_mut().for_each(|v| *v = ground);
        for &(c, r, q, value) in marks {
            for y in 2 * r..2 * r + 2 {
                for x in 2 * q..2 * q + 2 {
                    t[c * H * W + y * W + x] = value;
                }
            }
        }
        t
    }

    struct Images(Vec<Vec<f32>>);
    impl ImageSource for Images {
        fn tensor(&self, image_index: usize) -> Result<Vec<f32>> {
            Ok(self.0[image_index].clone())
        }
    }

    struct NoPictures;
    impl PictureSink for NoPictures {
        fn write(&self, _: GroupId, pictures: &[Vec<f32>]) -> Result<Vec<String>> {
            assert_eq!(pictures.len(), 4);
            Ok(Vec::new())
        }
    }

    /// Class 0: three images carry a shortcut (channel 0, top-left) that the model weighs
    /// ten times, three only the class's weak object (channel 1, bottom-right). Class 1:
    /// a stronger background (channel 2). The shortcut group's region turns every class-1
    /// image into class 0 and neither control does; the object group's region turns none.
    #[test]
    fn a_shortcut_group_flips_recipients_beyond_both_controls() {
        let quadrant = |c: usize, r: usize, q: usize, weight: f32| {
            let mut w = vec![0.0; 3 * H * W];
            for y in 2 * r..2 * r + 2 {
                for x in 2 * q..2 * q + 2 {
                    w[c * H * W + y * W + x] = weight;
                }
            }
            w
        };
        let class0: Vec<f32> = quadrant(0, 0, 0, 10.0)
            .iter()
            .zip(quadrant(1, 1, 1, 0.5))
            .map(|(a, b)| a + b)
            .collect();
        let class1: Vec<f32> = (0..3 * H * W).map(|i| f32::from(i >= 2 * H * W)).collect();
        let mut model = LinearModel {
            weights: vec![class0, class1],
            scored: 0,
        };
        let mut tensors = Vec::new();
        for _ in 0..3 {
            tensors.push(image(&[(0, 0, 0, 1.0)], 0.1));
        }
        for _ in 0..3 {
            tensors.push(image(&[(1, 1, 1, 1.0)], 0.1));
        }
        for _ in 0..6 {
            tensors.push(image(&[], 0.3));
        }
        let logits = model.logits(&tensors).unwrap();
        let mut by_class = MembersByClass::new();
        for (i, l) in logits.iter().enumerate() {
            let class = i32::from(i >= 6);
            let map = match i {
                0..=2 => vec![1.0, 0.0, 0.0, 0.0],
                _ => vec![0.0, 0.0, 0.0, 1.0],
            };
            by_class.entry(class).or_default().push(Member {
                image_index: i,
                map,
                predicted: predicted(l) as i32,
                class_logit: l[class as usize],
            });
        }
        assert!(by_class
            .values()
            .flatten()
            .enumerate()
            .all(|(i, m)| m.predicted == i32::from(i >= 6)));
        let mut labels = GroupLabels::new();
        for i in 0..6 {
            let cluster = i32::from(i >= 3);
            labels.insert((0, i, FeatureSpace::Relevance), (cluster, cluster));
        }
        let settings = VerifySettings::default();
        let images = Images(tensors);
        let mut bench = Bench {
            scorer: &mut model,
            images: &images,
            settings: &settings,
            grid: 2,
            size: [H, W],
            bounds: [(0.0, 1.0); 3],
            pictures: &NoPictures,
        };
        let rows = class_evidence(&mut bench, (0, "zero"), &by_class, &labels).unwrap();
        assert_eq!(rows.len(), 2);
        let shortcut = &rows[0];
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert_eq!(shortcut.region, "r0c0");
        assert_eq!(shortcut.transplant_images, 6);
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert_eq!(shortcut.specific(), 1.0);
        // Filled with the image's mean (0.25 on channel 0): the logit falls from 40 to 10.
        assert!((shortcut.occlusion_drop - 0.75).abs() < 1e-6);
        let object = &rows[1];
        assert_eq!(object.region, "r1c1");
        assert_eq!(object.transplant_flip_rate, 0.0);
        // Its moved control pastes the shortcut images' own relevance: the shortcut.
        assert_eq!(object.transplant_flip_rate_rest, 1.0);
        // Recipients once; per group: two occlusions, the transplant, two controls.
        assert_eq!(model.scored, 12 + 6 + 2 * (3 + 3 + 6 + 6 + 6));
    }
}

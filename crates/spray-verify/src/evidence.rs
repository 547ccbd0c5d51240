//! Measuring a tested group, whatever its test: occlusion (what the group's images lose) and
//! transplant (what other classes' images gain) with the test's [`Plan`], against the control
//! (the same from the class's other images); the stronger control counts.

use spray_store::verify::Evidence;
use spray_store::{EvidenceTest, GroupId};

use crate::direction::{self, ActivationCache};
use crate::groups::{AnalysedGroups, TestedGroup};
use crate::images::{ColourStats, ImageSource, Tensor};
use crate::members::{recipients, spread, KnownLogits, Member, MembersByClass};
use crate::probe::{self, Apply, Carrier, ClassCache, Method, Plan, ProbeInput};
use crate::recipients::Recipients;
use crate::region;
use crate::scorer::{predicted, Scorer};
use crate::settings::VerifySettings;
use crate::transplant::{transplant_in_looks, Looked, Rates, Sides, Standing};
use crate::verdict::{self, OpenRow};
use crate::Result;

mod repeats;
use repeats::Repeats;

/// Where a tested group's four before/after pictures go (prepared tensors, `examples::KINDS`
/// order); returns the path the evidence row lists (none: not kept).
pub trait PictureSink {
    fn write(
        &self,
        group: GroupId,
        test: EvidenceTest,
        pictures: [&[f32]; 4],
    ) -> Result<Option<String>>;
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
    /// The relevance stage's logits of the recipients (`members::read_logits`): their logits
    /// before any change, not scored again.
    pub logits: &'a KnownLogits,
}

/// The evidence of one class: the groups chosen to test (`AnalysedGroups::tested_and_reserve`:
/// worth testing, most distinct first, within the budget), each by its space's evidence
/// tests, then the reserve's by the tests that look beyond the budget; one row per measured
/// group and test.
pub fn class_evidence(
    bench: &mut Bench<'_>,
    (class, name): (i32, &str),
    by_class: &MembersByClass,
    analysed: &AnalysedGroups,
) -> Result<Vec<Evidence>> {
    let Some(members) = by_class.get(&class) else {
        return Ok(Vec::new());
    };
    let g = bench.grid;
    let (groups, reserve) = analysed.tested_and_reserve(class, members, bench.settings);
    let class_mean = {
        let maps: Vec<&[f32]> = members.iter().map(|m| m.map.as_slice()).collect();
        region::mean(&maps, g * g)
    };
    let (first, later) = recipients(by_class, class, bench.settings.recipient_counts());
    let known = first
        .iter()
        .chain(&later)
        .map(|i| bench.logits.get(i).cloned())
        .collect();
    let recipients = Recipients::new(bench.images.tensors(&first)?, later, known);
    let cache = ClassCache::default();
    let colours = ColourStats::new(bench.bounds);
    let layers = bench.scorer.layers();
    let mut activations = ActivationCache::default();
    // Every test measured so far, on which group (`Repeats`).
    let mut measured = Repeats::new(bench.settings.same_group_overlap);
    let mut evidence = Vec::new();
    // Whether a row so far surely flagged the class (`Standing::settled`).
    let mut settled = false;
    // Counting rows whose verdict the first recipients left open.
    let mut open = Vec::new();
    let class = ClassRef {
        index: class,
        name,
        members,
    };
    let each = ClassBench {
        class: &class,
        class_mean: &class_mean,
        tested: (&groups, &reserve),
        recipients: &recipients,
        colours: &colours,
        cache: &cache,
    };
    // The budget's groups, then the reserve's, which only a test that looks beyond the budget
    // may take (`Probe::beyond_budget`; its plan says which it takes).
    let in_budget = groups.len();
    for (at, group) in groups.iter().chain(&reserve).enumerate() {
        let beyond = at >= in_budget;
        for test in probe::tests_of(group.id.space.spec()) {
            if !probe::runs(group.id.space.spec(), test, bench.settings) {
                continue;
            }
            let probe = probe::probe(test);
            if beyond && !probe.beyond_budget {
                continue;
            }
            let plan = match probe.method {
                Method::Pixels(plan) => plan,
                Method::ModelSide => {
                    let Some(layer) = direction::layer_for(group.id.space, layers.len()) else {
                        continue;
                    };
                    if measured.seen((test, Some(layer)), &group.members) {
                        continue;
                    }
                    measured.record((test, Some(layer)), &group.members);
                    let rest_rows =
                        spread(&group.rest(members.len()), bench.settings.transplant_images);
                    evidence.extend(direction::test_group(
                        bench,
                        &mut activations,
                        (&class, group, &rest_rows),
                        (layer, &layers[layer]),
                        &recipients,
                    )?);
                    continue;
                }
            };
            if measured.seen((test, None), &group.members) {
                continue;
            }
            let standing = Standing::of(&evidence, settled);
            let Some((row, looked)) =
                pixel_row(bench, &each, group, (test, plan), standing, false)?
            else {
                continue;
            };
            measured.record((test, None), &group.members);
            settled |= looked.surely && row.counts();
            if looked.open && row.counts() {
                open.push(OpenRow {
                    row: evidence.len(),
                    at,
                    test,
                    plan,
                });
            }
            evidence.push(row);
        }
    }
    verdict::decide_open(bench, &each, &mut evidence, open, settled)?;
    Ok(evidence)
}

/// What every pixel-side row of one class is measured with.
pub(crate) struct ClassBench<'c> {
    pub(crate) class: &'c ClassRef<'c>,
    pub(crate) class_mean: &'c [f64],
    /// The groups within the budget, and the reserve.
    pub(crate) tested: (&'c [TestedGroup], &'c [TestedGroup]),
    pub(crate) recipients: &'c Recipients,
    pub(crate) colours: &'c ColourStats,
    pub(crate) cache: &'c ClassCache,
}

/// One pixel-side row: `test`'s plan for `group` (none: the test has nothing to give it),
/// measured; `later`: a row whose verdict its first recipients leave open goes on to the
/// later ones.
pub(crate) fn pixel_row(
    bench: &mut Bench<'_>,
    each: &ClassBench<'_>,
    group: &TestedGroup,
    (test, plan): (EvidenceTest, probe::PlanFn),
    standing: Standing,
    later: bool,
) -> Result<Option<(Evidence, Outcome)>> {
    let members = each.class.members;
    let rest = group.rest(members.len());
    let rest_rows = spread(&rest, bench.settings.transplant_images);
    let input = ProbeInput {
        members,
        class_mean: each.class_mean,
        group: &group.members,
        rest: &rest,
        rest_rows: &rest_rows,
        grid: bench.grid,
        size: bench.size,
        bounds: &bench.bounds,
        settings: bench.settings,
        groups: each.tested.0,
        reserve: each.tested.1,
        images: bench.images,
        cache: each.cache,
        colours: each.colours,
    };
    let Some(plan) = plan(&input)? else {
        return Ok(None);
    };
    test_group(
        bench,
        (each.class, test),
        group,
        &rest_rows,
        &plan,
        (each.recipients, each.colours),
        (standing, later),
    )
    .map(Some)
}

/// How a row's measurement ended, beside its figures.
pub(crate) struct Outcome {
    /// It surely flags its class (`Rates::surely_flags`).
    pub(crate) surely: bool,
    /// Its last look left it within two standard errors of the flag (`Rates::undecided`), and
    /// there are later recipients it could go on to.
    pub(crate) open: bool,
}

/// The class under test.
pub(crate) struct ClassRef<'a> {
    pub(crate) index: i32,
    pub(crate) name: &'a str,
    pub(crate) members: &'a [Member],
}

/// What one evidence test measured of a group.
pub(crate) struct Measured {
    pub(crate) test: EvidenceTest,
    /// How the row describes what was changed, and its size in grid cells.
    pub(crate) region: (String, usize),
    /// The group's occlusion (or ablation), and the rest of the class's.
    pub(crate) occlusion: (Occlusion, Occlusion),
    pub(crate) rates: Rates,
    pub(crate) pictures: Option<String>,
}

impl ClassRef<'_> {
    /// The evidence row of `group` (of this class) for what a test measured.
    pub(crate) fn row(&self, group: &TestedGroup, grid: usize, m: Measured) -> Evidence {
        let (own, others) = m.occlusion;
        Evidence {
            class_index: self.index,
            class_name: self.name.to_string(),
            space: group.id.space,
            level: group.id.level,
            cluster: group.id.label,
            size: group.members.len(),
            share: group.members.len() as f64 / self.members.len() as f64,
            test: m.test,
            region: m.region.0,
            region_cells: m.region.1,
            grid,
            occlusion_drop: own.drop,
            occlusion_drop_rest: others.drop,
            accuracy_before: own.accuracy_before,
            accuracy_after: own.accuracy_after,
            transplant_logit_gain: m.rates.gain,
            transplant_flip_rate: m.rates.flip,
            transplant_flip_rate_rest: m.rates.control,
            transplant_images: m.rates.measured,
            control_images: m.rates.control_measured,
            occluded_images: own.images,
            pictures: m.pictures,
        }
    }
}

/// What occluding (or ablating) a set of the class's images did.
pub(crate) struct Occlusion {
    /// Mean relative drop of the class logit.
    pub(crate) drop: f64,
    /// Share predicted as the class before and after.
    pub(crate) accuracy_before: f64,
    pub(crate) accuracy_after: f64,
    /// Images measured; 0: not measured.
    pub(crate) images: usize,
}

impl Occlusion {
    /// The columns of an occlusion that was not measured (a screened row).
    pub(crate) const NOT_MEASURED: Occlusion = Occlusion {
        drop: 0.0,
        accuracy_before: 0.0,
        accuracy_after: 0.0,
        images: 0,
    };
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
    Ok(occlusion_of(class, rows, &scorer.logits(occluded)?))
}

/// Members `rows` scored `after` a change, against their logits before.
pub(crate) fn occlusion_of(class: &ClassRef<'_>, rows: &[usize], after: &[Vec<f32>]) -> Occlusion {
    let k = class.index as usize;
    let n = rows.len().max(1) as f64;
    let members = class.members;
    let drop = rows
        .iter()
        .zip(after)
        .map(|(&i, a)| relative_drop(members[i].class_logit, a[k]))
        .sum::<f64>()
        / n;
    let accuracy_before = rows
        .iter()
        .filter(|&&i| members[i].predicted == class.index)
        .count() as f64
        / n;
    let accuracy_after = after.iter().filter(|a| predicted(a) == k).count() as f64 / n;
    Occlusion {
        drop,
        accuracy_before,
        accuracy_after,
        images: rows.len(),
    }
}

/// One group's evidence row by a pixel-side test, measured against where its class stands
/// so far; and whether its transplant surely flags (`transplant::Looked::surely`).
fn test_group(
    bench: &mut Bench<'_>,
    (class, test): (&ClassRef<'_>, EvidenceTest),
    group: &TestedGroup,
    rest_rows: &[usize],
    plan: &Plan,
    (recipients, colours): (&Recipients, &ColourStats),
    (standing, later): (Standing, bool),
) -> Result<(Evidence, Outcome)> {
    let members = class.members;
    let image =
        |rows: &[usize]| -> Vec<usize> { rows.iter().map(|&i| members[i].image_index).collect() };
    // The group's images, decoded once: occluded, pictured and given from; then (up to
    // transplant_images of) the rest's, the control.
    let (donor_images, rest_images) = (image(&group.members), image(rest_rows));
    let donors = bench.images.tensors(&donor_images)?;
    let rest = bench.images.tensors(&rest_images)?;
    let donor_colours = colours.of(&donor_images, &donors);
    let rest_colours = colours.of(&rest_images, &rest);
    let apply = Apply {
        width: bench.size[1],
        fill: bench.settings.fill,
        seed: bench.settings.seed,
        bounds: &bench.bounds,
    };

    let k = class.index as usize;
    let sides = Sides {
        donors: (&donors, &donor_colours),
        rest: (&rest, &rest_colours),
    };
    let Looked {
        measured,
        stopped_short,
        surely,
        open,
    } = transplant_in_looks(
        (&mut *bench.scorer, bench.images, bench.settings.first_look),
        (plan, &apply, &sides),
        recipients,
        (k, standing, later, test.needs_loss()),
    )?;
    let rates = measured.rates(recipients, k);

    // Occlusion of at most `occlusion_images` of each side, spread over it (0: all), where it
    // can matter (`occlusion_matters`).
    let cap = bench.settings.occlusion_images;
    let occluded =
        |images: &[Tensor], carrier: &dyn Carrier, rows: &[usize], shift: usize, cap: usize| {
            let at = spread(&Vec::from_iter(0..rows.len()), cap);
            let originals: Vec<Tensor> = at.iter().map(|&p| images[p].clone()).collect();
            let rows: Vec<usize> = at.iter().map(|&p| rows[p]).collect();
            let covered = apply.take_away(
                &originals,
                &*carrier.subset(&at),
                &rows,
                &rest_colours,
                shift,
            );
            (rows, covered)
        };
    let matters = occlusion_matters(&rates, stopped_short, standing.strongest);
    let (own, others, first_covered) = if !matters {
        // Only the picture: the first member with the change taken away, unscored.
        let (_, covered) = occluded(&donors, &*plan.group, &group.members, 0, 1);
        (Occlusion::NOT_MEASURED, Occlusion::NOT_MEASURED, covered)
    } else {
        let (rows, covered) = occluded(&donors, &*plan.group, &group.members, 0, cap);
        let own = occlusion(bench.scorer, class, &rows, &covered)?;
        let (rows, covered_rest) = occluded(&rest, &*plan.control, rest_rows, 1, cap);
        let others = occlusion(bench.scorer, class, &rows, &covered_rest)?;
        (own, others, covered)
    };

    // Pictures for the report: the first member before and after occlusion, the first
    // recipient (always in the first look) before and after the transplant; none where there
    // is no recipient (a dataset of one class).
    let pictures = match (
        (recipients.first_count() > 0).then(|| recipients.tensor(0)),
        &measured.first_pasted,
    ) {
        (Some(before), Some(after)) => bench.pictures.write(
            group.id,
            test,
            [&donors[0], &first_covered[0], before, after],
        )?,
        _ => None,
    };
    let row = class.row(
        group,
        bench.grid,
        Measured {
            test,
            region: (plan.region.clone(), plan.region_cells),
            occlusion: (own, others),
            rates,
            pictures,
        },
    );
    Ok((row, Outcome { surely, open }))
}

/// Whether a row's occlusion is measured: not for a row that stopped short of its last look
/// (`stopped_short`: a screened row, or one whose effect could no longer reach the bar), nor
/// for a row whose effect is below its class's strongest counting row so far. Why: the
/// occlusion decides only whether a row counts (`Evidence::counts`). A row below the class's
/// strongest can become neither the class's strongest row nor change its verdict or the bar
/// of later rows (`transplant::bar`), measured or not (a tie is measured: the evidence order
/// breaks ties by the occlusion). A row that stopped short cannot flag its class; counted,
/// it could only set an unflagged class's figure, which orders the unflagged classes among
/// themselves — on the scenario suite every flag, AUROC and shortcut's rank held without
/// those occlusions, and they were 6–15% of the images the stage scored (occluded on as many
/// images as recipients before; benches/RESULTS.md). Such rows show their occlusion as not
/// measured.
fn occlusion_matters(rates: &Rates, stopped_short: bool, strongest: Option<f64>) -> bool {
    !stopped_short && !rates.screened() && strongest.is_none_or(|s| rates.specific() >= s)
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::fake::Images;
    use crate::scorer::fake::LinearModel;
    use spray_store::FeatureSpace;

    /// Hand-made rates: a screened row, or one stopped short, is never occluded; one measured
    /// on every recipient where nothing of its class counts yet, or where it reaches (or ties)
    /// the strongest counting effect.
    #[test]
    fn only_a_row_that_could_be_its_class_strongest_is_occluded() {
        let rates = |flip: f64, control: f64, controlled: usize| Rates {
            flip,
            control,
            gain: 0.0,
            measured: 10,
            control_measured: controlled,
            eligible: 10,
            paired: None,
        };
        assert!(
            !occlusion_matters(&rates(0.4, 0.0, 0), false, None),
            "screened"
        );
        assert!(
            !occlusion_matters(&rates(0.2, 0.0, 10), true, None),
            "stopped short"
        );
        assert!(
            occlusion_matters(&rates(0.1, 0.3, 10), false, None),
            "nothing counts yet"
        );
        assert!(
            occlusion_matters(&rates(0.5, 0.1, 10), false, Some(0.5 - 0.1)),
            "a tie"
        );
        assert!(occlusion_matters(&rates(0.6, 0.1, 10), false, Some(0.4)));
        assert!(!occlusion_matters(&rates(0.5, 0.2, 10), false, Some(0.4)));
    }

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

    /// Class 0: three images carry a shortcut (channel 0, top-left) that the model weighs
    /// ten times, three only the class's weak object (channel 1, bottom-right). Class 1:
    /// a stronger background (channel 2).
    fn two_classes() -> (LinearModel, Images, MembersByClass, AnalysedGroups) {
        two_classes_over(&[0.3; 6])
    }

    /// [`two_classes`] with class 1's images on these backgrounds (channel 2, one image each):
    /// the shortcut's mark (logit 40) turns those below 3.3 (12 · ground + 0.4).
    fn two_classes_over(grounds: &[f32]) -> (LinearModel, Images, MembersByClass, AnalysedGroups) {
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
        for &ground in grounds {
            tensors.push(image(&[], ground));
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
                ..crate::members::bare_member(i)
            });
        }
        assert!(by_class
            .values()
            .flatten()
            .enumerate()
            .all(|(i, m)| m.predicted == i32::from(i >= 6)));
        let mut analysed = AnalysedGroups::default();
        for i in 0..6 {
            let cluster = i32::from(i >= 3);
            analysed
                .labels
                .insert((0, i, FeatureSpace::Relevance), (cluster, cluster));
        }
        (model, Images(tensors), by_class, analysed)
    }

    /// The linear model's evidence of class 0 under `settings` (no steerable layer: the
    /// pixel-side tests only).
    fn class_zero(settings: &VerifySettings) -> (Vec<Evidence>, usize) {
        class_zero_over(settings, &[0.3; 6])
    }

    /// [`class_zero`] with class 1's images on `grounds` ([`two_classes_over`]).
    fn class_zero_over(settings: &VerifySettings, grounds: &[f32]) -> (Vec<Evidence>, usize) {
        let (mut model, images, by_class, analysed) = two_classes_over(grounds);
        let known = KnownLogits::new();
        let rows = evidence_of_class_zero(
            &mut model,
            (&images, &by_class, &analysed),
            (settings, &known),
        );
        (rows, model.scored)
    }

    /// Recipients whose logits the relevance stage stored are not scored again; every row
    /// is what scoring them gives.
    #[test]
    fn recipients_with_stored_logits_are_not_scored() {
        let settings = VerifySettings::default();
        let (rows, scored) = class_zero(&settings);
        let (mut model, images, by_class, analysed) = two_classes();
        // What building the members scored, as in `class_zero`; the stored logits are not
        // counted (the relevance stage's).
        let members_scored = model.scored;
        let known: KnownLogits = (6..12)
            .map(|i| (i, model.logits(&images.0[i..=i]).unwrap().remove(0)))
            .collect();
        model.scored = members_scored;
        let again = evidence_of_class_zero(
            &mut model,
            (&images, &by_class, &analysed),
            (&settings, &known),
        );
        assert_eq!(again, rows);
        assert_eq!(model.scored, scored - 6);
    }

    /// Class 0's evidence under `settings`, scored by `scorer`.
    fn evidence_of_class_zero(
        scorer: &mut dyn Scorer,
        (images, by_class, analysed): (&Images, &MembersByClass, &AnalysedGroups),
        (settings, logits): (&VerifySettings, &KnownLogits),
    ) -> Vec<Evidence> {
        fake::class_zero_evidence(
            scorer,
            (images, by_class, analysed),
            (settings, logits),
            (2, [H, W]),
        )
    }

    /// The model-side test, with the input as the steered layer: a shortcut member's
    /// coordinate along the group's direction (its mark minus the object) turns every class-1
    /// image into class 0; an object member's along the object group's turns none; removing
    /// the shortcut's direction from its own images takes their logit to the rest's level.
    #[test]
    fn the_feature_direction_of_a_shortcut_group_turns_recipients_and_its_ablation_drops_the_logit()
    {
        let (model, images, by_class, analysed) = two_classes();
        let mut scorer = crate::scorer::fake::SteerableLinear(model);
        let settings = VerifySettings {
            feature_direction: true,
            ..VerifySettings::default()
        };
        let known = KnownLogits::new();
        let rows = evidence_of_class_zero(
            &mut scorer,
            (&images, &by_class, &analysed),
            (&settings, &known),
        );
        let direction = fake::rows_of(&rows, EvidenceTest::FeatureDirection);
        assert_eq!(direction.len(), 2);
        let (shortcut, object) = (direction[0], direction[1]);
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert_eq!(shortcut.region, "direction at input");
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(object.transplant_flip_rate, 0.0);
        // The shortcut images' logit (10 + 0.25·0.5... of the mark) falls to the rest's level:
        // 10·4 → 0.5·4 = 2, a drop of 95%.
        assert!(
            (shortcut.occlusion_drop - 0.95).abs() < 1e-5,
            "{}",
            shortcut.occlusion_drop
        );
        // The rest is the level: ablating it changes nothing.
        assert!(shortcut.occlusion_drop_rest.abs() < 1e-6);
        assert!(shortcut.pictures.is_none());
        // The control: the rest's coordinate on the same axis, the object, turns none (the
        // rest's images are identical: no subset direction). The object group's control is
        // the shortcut images' coordinate: it turns all.
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert_eq!(shortcut.specific(), 1.0);
        assert_eq!(object.transplant_flip_rate_rest, 1.0);
    }

    /// The shortcut group's region turns every class-1 image into class 0 and neither control
    /// does; the object group's region turns none.
    #[test]
    fn a_shortcut_group_flips_recipients_beyond_both_controls() {
        let settings = VerifySettings {
            detail_transfer: false,
            colour_transfer: false,
            texture_transfer: false,
            coarse_transfer: false,
            ..VerifySettings::default()
        };
        let (rows, scored) = class_zero(&settings);
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
        // Below the class's strongest row (the shortcut's, measured first): its occlusion
        // could not change which row is strongest, and is not measured.
        assert!(!object.screened());
        assert_eq!((object.control_images, object.occluded_images), (6, 0));
        // Recipients once; the shortcut: two occlusions, the transplant, two controls; the
        // object: the transplant and two controls.
        assert_eq!(scored, 12 + 6 + (3 + 3 + 6 + 6 + 6) + (6 + 6 + 6));
    }

    /// A row whose first recipients leave the flag open goes on to more until its effect is
    /// two standard errors clear of it. Class 1 has sixty images; the mark turns six of them
    /// (0.1), two of them among the six every row is measured on (0.33 ± 0.40, the controls
    /// turning none). With `verdict_images` the row reads under the flag on more recipients,
    /// its stronger control measured on each; without, it stays at 2 of 6 and would flag its
    /// class.
    #[test]
    fn a_row_its_first_recipients_leave_open_is_measured_on_more() {
        // The first part is every tenth of class 1's images (`members::spread`): 0 and 10 of
        // them turn, and four of the others.
        let turning = [0, 10, 5, 15, 25, 35];
        let grounds: Vec<f32> = (0..60)
            .map(|p| if turning.contains(&p) { 0.3 } else { 5.0 })
            .collect();
        let settings = VerifySettings {
            transplant_images: 6,
            verdict_images: 60,
            detail_transfer: false,
            colour_transfer: false,
            texture_transfer: false,
            coarse_transfer: false,
            ..VerifySettings::default()
        };
        let flag = spray_store::ranking::FLAG_SPECIFIC_EFFECT;
        let (rows, _) = class_zero_over(&settings, &grounds);
        let shortcut = &rows[0];
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert!(
            shortcut.transplant_images > 6,
            "{}",
            shortcut.transplant_images
        );
        assert_eq!(shortcut.control_images, shortcut.transplant_images);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert!(shortcut.specific() < flag, "{}", shortcut.specific());
        let turned = shortcut.transplant_flip_rate * shortcut.transplant_images as f64;
        assert!((turned - turned.round()).abs() < 1e-9 && turned >= 2.0);
        // Without more recipients: two of six, above the flag.
        let first_only = VerifySettings {
            verdict_images: 0,
            ..settings
        };
        let (rows, _) = class_zero_over(&first_only, &grounds);
        assert_eq!(rows[0].transplant_images, 6);
        assert!((rows[0].specific() - 2.0 / 6.0).abs() < 1e-9);
        assert!(rows[0].specific() >= flag);
    }

    /// Measured on the first three recipients first: the object group turns none of them, so
    /// it could not reach the flag whatever its controls do, and stops there before them and
    /// before its occlusion (a screened row); the shortcut group goes on to all six.
    #[test]
    fn a_group_that_cannot_reach_the_flag_stops_after_the_first_look() {
        let settings = VerifySettings {
            first_look: 3,
            detail_transfer: false,
            colour_transfer: false,
            texture_transfer: false,
            coarse_transfer: false,
            ..VerifySettings::default()
        };
        let (rows, scored) = class_zero(&settings);
        let (shortcut, object) = (&rows[0], &rows[1]);
        assert_eq!(shortcut.transplant_images, 6);
        assert_eq!(shortcut.specific(), 1.0);
        assert_eq!((shortcut.control_images, shortcut.occluded_images), (6, 3));
        assert!(!shortcut.screened());
        assert_eq!(object.transplant_images, 3);
        assert_eq!(object.transplant_flip_rate, 0.0);
        assert!(object.screened());
        assert_eq!((object.control_images, object.occluded_images), (0, 0));
        assert_eq!(object.transplant_flip_rate_rest, 0.0);
        // The shortcut as before; the object: three recipients for its transplant only.
        assert_eq!(scored, 12 + 6 + (3 + 3 + 6 + 6 + 6) + 3);
    }

    /// Looks of one, three, then six recipients: the shortcut turns the first three beyond
    /// both controls (which turn none), surely flagged, and stops there — not at the first
    /// look, where one recipient's standard error reads 0.
    #[test]
    fn a_group_surely_flagged_stops_from_the_second_look_on() {
        let settings = VerifySettings {
            first_look: 1,
            detail_transfer: false,
            colour_transfer: false,
            texture_transfer: false,
            coarse_transfer: false,
            ..VerifySettings::default()
        };
        let (rows, scored) = class_zero(&settings);
        let (shortcut, object) = (&rows[0], &rows[1]);
        assert_eq!(shortcut.transplant_images, 3);
        assert_eq!(shortcut.control_images, 3);
        assert_eq!(shortcut.specific(), 1.0);
        assert_eq!(object.transplant_images, 1);
        assert!(object.screened());
        // Only the three recipients reached are scored before; the shortcut: three for the
        // transplant and each control, its occlusion in full (its three members, three of
        // the rest); the object one recipient.
        assert_eq!(scored, 12 + 3 + (3 + 3 + 3 + 3 + 3) + 1);
    }

    /// The fine-detail transfer: the shortcut's mark is detail (a bright block on a flat
    /// ground), so adding the shortcut images' detail turns recipients and the other images'
    /// detail (the weak object's edges) does not.
    #[test]
    fn the_fine_detail_of_a_shortcut_group_turns_recipients_beyond_its_controls() {
        let (rows, _) = class_zero(&VerifySettings::default());
        let detail = fake::rows_of(&rows, EvidenceTest::DetailTransfer);
        assert_eq!(detail.len(), 2);
        // By default each relevance group is also given its colours (`colour_transfer`);
        // the tests above switch it off to count the region test's images alone.
        let colours = fake::rows_of(&rows, EvidenceTest::ColourTransfer).len();
        assert_eq!(colours, 2);
        let (shortcut, object) = (detail[0], detail[1]);
        assert_eq!(shortcut.group().name(), "cluster 0");
        assert_eq!(shortcut.region, "fine detail");
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert_eq!(object.transplant_flip_rate, 0.0);
        // The object group's control is the shortcut images' detail: it turns all.
        assert_eq!(object.transplant_flip_rate_rest, 1.0);
        // Low-passed, the shortcut's 2 × 2 block still outweighs the background: its images
        // keep the class, so the row is shown but does not count (Evidence::counts); the
        // object's images lose it.
        assert_eq!(shortcut.accuracy_after, 1.0);
        assert!(!shortcut.counts());
        assert_eq!(object.accuracy_after, 0.0);
    }
}

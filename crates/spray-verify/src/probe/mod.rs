//! The evidence tests, one file each, and [`probe`]: the table of them. A file holds
//! everything about its test — which spaces' groups it runs on, its `[verify]` switch, how it
//! changes images (its [`Carrier`]: what the group's images lose, what other classes' images
//! receive, what the control gives instead), and how the report words it ([`Wording`]).
//! [`crate::evidence`] measures every pixel-side test the same way (occlusion, transplant, the
//! stronger control); the model-side test is [`crate::direction`].
//!
//! A new test is its name in [`spray_store::EvidenceTest`] (the value of the `test` column),
//! one file here and its line in [`probe`]; the test over the table below checks it.

mod chance;
mod class_detail;
mod class_power;
mod coarse_transfer;
mod colour_transfer;
mod detail_transfer;
mod feature_direction;
mod member_region;
mod member_statistics;
mod pattern_transfer;
mod regions;
mod shading_transfer;
mod shared_region;
mod sharpness_transfer;
mod spectrum_transfer;
mod texture_transfer;
mod tone_transfer;

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use spray_store::{EvidenceTest, SpaceSpec};

use crate::groups::TestedGroup;
use crate::images::{ColourStats, ImageSource, Tensor};
use crate::members::Member;
use crate::perturb::ColourProfile;
use crate::settings::{Fill, VerifySettings};
use crate::Result;

/// Everything about one evidence test.
pub struct Probe {
    pub test: EvidenceTest,
    /// Whether the test also runs on the groups of `space` (every space runs its own test,
    /// `SpaceSpec::own_test`, first; then each test of the table that says yes here, in
    /// table order). Never on a space whose groups are not suspects.
    pub also_for: fn(&SpaceSpec) -> bool,
    /// Whether the run's settings switch the test on where it is not the space's own test
    /// (a space's own test always runs; its space's switch says whether the space is tested;
    /// both together: [`runs`]).
    pub on: fn(&VerifySettings) -> bool,
    /// Whether the test also chooses among the class's groups outside the budget
    /// (`ProbeInput::reserve`: worth testing, but not among the `[verify] max_groups` the
    /// budget took). Only for a test that takes a few groups a class by a measure of its own
    /// (`fewest_by_key`), so that a reserve group costs nothing unless the test takes it.
    pub beyond_budget: bool,
    pub method: Method,
    pub wording: Wording,
}

/// How a test changes what the model sees.
pub enum Method {
    /// Pixel-side: the plan of what is taken from and given to images for one group, or
    /// `None` when there is nothing to change (an empty region).
    Pixels(PlanFn),
    /// Model-side: the group's direction at a concept layer ([`crate::direction`]); no
    /// pictures.
    ModelSide,
}

/// A pixel-side test's plan for a group: what it gives and takes away (none: nothing to
/// give this group).
pub type PlanFn = fn(&ProbeInput<'_>) -> Result<Option<Plan>>;

/// How the report tells a test's result.
pub struct Wording {
    /// What of the group turns other classes' images, with its verb: "region turns".
    pub transferred: &'static str,
    /// The captions of the four before/after pictures (`examples::KINDS` order): a group
    /// member before and after, another class's image before and after; empty for a test
    /// without pictures.
    pub captions: [&'static str; 4],
    /// The plain-language line a reviewer reads about the group's strongest row, with
    /// [`Told::fill`]'s placeholders.
    pub sentence: &'static str,
}

/// The sentence of a screened row (`Evidence::screened`), whatever its test: only its own
/// transplant was measured. `{transferred}` is the test's [`Wording::transferred`], the rest
/// [`Told::fill`]'s placeholders.
pub const SCREENED_SENTENCE: &str = "Given to {images} images of other classes, {group}'s \
     {transferred} {flip} of them into “{class}” (logit {gain} on average): too few to reach \
     the flag, or the class's strongest group, even if its control turned none, so neither \
     its control nor its occlusion was measured.";

/// What a sentence tells of an evidence row.
pub struct Told<'a> {
    /// The group's name ("cluster 3").
    pub group: &'a str,
    pub class: &'a str,
    /// The row's `region` column.
    pub region: &'a str,
    /// Recipients measured.
    pub images: usize,
    pub flip: f64,
    /// The stronger control's flip rate.
    pub control_flip: f64,
    /// Mean gain of the class logit.
    pub gain: f64,
    /// Occlusion (or ablation) drop of the group's images and of the rest of the class's.
    pub drop: f64,
    pub drop_rest: f64,
}

impl Told<'_> {
    /// `template` with `{group}`, `{class}`, `{region}`, `{images}`, `{flip}`, `{control}`
    /// (the control's flip rate), `{gain}`, `{drop}` and `{drop_rest}` filled in, in one pass
    /// (a class name from the data that looks like a placeholder stays as it is). Any other
    /// `{…}` is kept.
    pub fn fill(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[open..]);
                return out;
            };
            match self.value(&after[..close]) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[open..open + close + 2]),
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "group" => self.group.to_string(),
            "class" => self.class.to_string(),
            "region" => self.region.to_string(),
            "images" => self.images.to_string(),
            "flip" => pct(self.flip),
            "control" => pct(self.control_flip),
            "gain" => format!("{:+.2}", self.gain),
            "drop" => pct(self.drop),
            "drop_rest" => pct(self.drop_rest),
            _ => return None,
        })
    }
}

/// A share as the report prints it: "42%".
pub fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// THE table: the one file that implements `test`.
pub fn probe(test: EvidenceTest) -> &'static Probe {
    match test {
        EvidenceTest::SharedRegion => &shared_region::PROBE,
        EvidenceTest::MemberRegion => &member_region::PROBE,
        EvidenceTest::ColourTransfer => &colour_transfer::PROBE,
        EvidenceTest::DetailTransfer => &detail_transfer::PROBE,
        EvidenceTest::SpectrumTransfer => &spectrum_transfer::PROBE,
        EvidenceTest::ShadingTransfer => &shading_transfer::PROBE,
        EvidenceTest::SharpnessTransfer => &sharpness_transfer::PROBE,
        EvidenceTest::PatternTransfer => &pattern_transfer::PROBE,
        EvidenceTest::ToneTransfer => &tone_transfer::PROBE,
        EvidenceTest::TextureTransfer => &texture_transfer::PROBE,
        EvidenceTest::CoarseTransfer => &coarse_transfer::PROBE,
        EvidenceTest::FeatureDirection => &feature_direction::PROBE,
    }
}

/// Whether the groups of `space` are tested at all: exactly when it has its own test (every
/// other test runs after it, [`tests_of`]); no list is built.
pub fn is_tested(space: &SpaceSpec) -> bool {
    space.own_test.is_some()
}

/// The tests of a space's groups, in the order they run: its own test, then every test that
/// also runs on it, in table order. None for a space that is not a suspect.
pub fn tests_of(space: &SpaceSpec) -> Vec<EvidenceTest> {
    let Some(own) = space.own_test else {
        return Vec::new();
    };
    std::iter::once(own)
        .chain(
            EvidenceTest::ALL
                .iter()
                .copied()
                .filter(|&t| t != own && (probe(t).also_for)(space)),
        )
        .collect()
}

/// Whether `test` runs on the groups of `space` under `settings`: the space's own test
/// always (the space's switch says whether the space is tested at all), every other test by
/// its probe's switch (`Probe::on`).
pub fn runs(space: &SpaceSpec, test: EvidenceTest, settings: &VerifySettings) -> bool {
    space.own_test == Some(test) || (probe(test).on)(settings)
}

/// For a test that takes only a few of a class's groups: of the groups it runs on
/// ([`tests_of`]; and the reserve's, for a test that looks beyond the budget,
/// [`Probe::beyond_budget`]), those `key` keeps (`Some`), the lowest key first (equal keys in
/// test order, the budget's groups before the reserve's), at most `max`, as their member
/// positions.
pub(crate) fn fewest_by_key(
    input: &ProbeInput<'_>,
    test: EvidenceTest,
    max: usize,
    mut key: impl FnMut(&TestedGroup) -> Option<f64>,
) -> Vec<Vec<usize>> {
    let reserve: &[TestedGroup] = if probe(test).beyond_budget {
        input.reserve
    } else {
        &[]
    };
    let mut candidates: Vec<(f64, &[usize])> = input
        .groups
        .iter()
        .chain(reserve)
        .filter(|g| tests_of(g.id.space.spec()).contains(&test))
        .filter_map(|g| Some((key(g)?, g.members.as_slice())))
        .collect();
    // Stable: equal keys stay in test order.
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    candidates
        .into_iter()
        .take(max)
        .map(|(_, m)| m.to_vec())
        .collect()
}

/// What one class's tests compute once and share (a test's own per-class facts, such as
/// each member's detail energy), by test or by a reading two tests share.
#[derive(Default)]
pub struct ClassCache(RefCell<BTreeMap<CacheKey, Rc<dyn Any>>>);

/// What a [`ClassCache`] value is kept under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheKey {
    /// A test's own per-class facts.
    Test(EvidenceTest),
    /// Each member's power spectrum, read once for the pattern and sharpness transfers
    /// (`class_power.rs`).
    Power,
}

impl From<EvidenceTest> for CacheKey {
    fn from(test: EvidenceTest) -> Self {
        CacheKey::Test(test)
    }
}

impl ClassCache {
    /// The value under `key` for this class, computed by `make` the first time it is asked
    /// for.
    pub fn get_or_try<T: 'static>(
        &self,
        key: impl Into<CacheKey>,
        make: impl FnOnce() -> Result<T>,
    ) -> Result<Rc<T>> {
        let key = key.into();
        if let Some(value) = self.0.borrow().get(&key) {
            if let Ok(value) = Rc::clone(value).downcast::<T>() {
                return Ok(value);
            }
        }
        let value = Rc::new(make()?);
        self.0.borrow_mut().insert(key, value.clone());
        Ok(value)
    }
}

/// What a carrier derives from each donor it gives from (its amplitudes, its low-pass), by
/// donor position, kept once computed. Why: a transplant gives each donor to several
/// recipients, round-robin, and a carrier always gives from one donor list (the group and each
/// control have their own carrier).
#[derive(Debug, Default)]
pub struct PerDonor<T>(RefCell<BTreeMap<usize, Rc<T>>>);

impl<T> PerDonor<T> {
    /// The first donors' values, where they are known already.
    pub fn known(values: &[Rc<T>]) -> Self {
        PerDonor(RefCell::new(values.iter().cloned().enumerate().collect()))
    }

    /// Donor `d`'s value, computed by `make` the first time it is asked for.
    pub fn get(&self, d: usize, make: impl FnOnce() -> T) -> Rc<T> {
        self.0
            .borrow_mut()
            .entry(d)
            .or_insert_with(|| Rc::new(make()))
            .clone()
    }
}

/// What a test changes in one set of images (a region per image, the colours, the fine
/// detail …), implemented in the test's file.
pub trait Carrier: std::fmt::Debug {
    /// Occlusion: image k of the set (member position `at.rows[k]`) loses what it carries.
    fn take_away(&self, k: usize, image: &mut Vec<f32>, at: &Occluding<'_>);
    /// Transplant: recipient j (counted over the whole transplant, however it is split into
    /// steps) receives from the donors.
    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>);
    /// The carrier of the images at `positions` only (occlusion of a subset).
    fn subset(&self, positions: &[usize]) -> Box<dyn Carrier>;
}

/// What an occlusion knows besides the image.
pub struct Occluding<'a> {
    pub apply: &'a Apply<'a>,
    /// Member position of each image (seeds a noise fill).
    pub rows: &'a [usize],
    /// Colour profiles of the class's other images, and the offset that pairs image k
    /// with `colours[(k + shift) % len]` (1 when the images are the colours' own, so that
    /// each takes another's).
    pub colours: &'a [ColourProfile],
    pub shift: usize,
}

/// What a transplant gives from.
pub struct Giving<'a> {
    pub apply: &'a Apply<'a>,
    pub donors: &'a [Tensor],
    /// The donors' colour profiles.
    pub colours: &'a [ColourProfile],
}

/// A test of one group, ready to measure.
#[derive(Debug)]
pub struct Plan {
    /// How the evidence row describes what was changed (`region`), and its size in cells.
    pub region: String,
    pub region_cells: usize,
    /// What is taken from (occlusion) and given from (transplant) the group's images.
    pub group: Box<dyn Carrier>,
    /// The control: the same taken from and given from the class's other images (the
    /// `rest` rows); the occlusion of the rest uses it too.
    pub control: Box<dyn Carrier>,
    /// A second control, where the test has one that differs; the stronger counts.
    pub second_control: Option<Box<dyn Carrier>>,
}

/// What a test sees of a class when it plans a group's test.
pub struct ProbeInput<'a> {
    pub members: &'a [Member],
    /// The class's mean map (L1-normalised maps), g × g.
    pub class_mean: &'a [f64],
    /// The group's member positions, and every other member's.
    pub group: &'a [usize],
    pub rest: &'a [usize],
    /// The rest's members that serve as the control's donors (`rest`, spread to at most
    /// `transplant_images`).
    pub rest_rows: &'a [usize],
    pub grid: usize,
    /// Input height and width.
    pub size: [usize; 2],
    /// Per channel, the values a pixel can take (`images::pixel_bounds`): black and white.
    pub bounds: &'a [(f32, f32); 3],
    pub settings: &'a VerifySettings,
    /// Every group of the class that the stage tests, in test order (for a test that ranks
    /// the class's groups before it chooses which to test).
    pub groups: &'a [TestedGroup],
    /// The class's other groups worth testing, outside the budget
    /// (`AnalysedGroups::reserve`), for a test that looks beyond it ([`Probe::beyond_budget`]).
    pub reserve: &'a [TestedGroup],
    /// The class's images, for a test that looks at pixels to plan.
    pub images: &'a dyn ImageSource,
    pub cache: &'a ClassCache,
    /// Each image's colour profile, once a class (`images::ColourStats`: the rows' donors'
    /// and controls' colours, and the colour transfer's screen).
    pub(crate) colours: &'a ColourStats,
}

/// How a carrier acts on images: pixel bounds for colours, the fill and seed for regions.
pub struct Apply<'a> {
    pub width: usize,
    pub fill: Fill,
    pub seed: u64,
    pub bounds: &'a [(f32, f32); 3],
}

impl Apply<'_> {
    /// Occlusion: each image loses what `carrier` carries (image k is member `rows[k]`).
    pub fn take_away(
        &self,
        originals: &[Tensor],
        carrier: &dyn Carrier,
        rows: &[usize],
        colours: &[ColourProfile],
        shift: usize,
    ) -> Vec<Vec<f32>> {
        let at = Occluding {
            apply: self,
            rows,
            colours,
            shift,
        };
        originals
            .iter()
            .enumerate()
            .map(|(k, original)| {
                let mut t = original.to_vec();
                carrier.take_away(k, &mut t, &at);
                t
            })
            .collect()
    }

    /// Transplant: the recipients from position `first` on receive what `carrier` carries
    /// of the donors (recipient j from donor j mod |donors|, unless the carrier pairs
    /// otherwise: a test measured in steps pairs each recipient as one measured at once).
    pub fn give(
        &self,
        (recipients, first): (&[Tensor], usize),
        donors: &[Tensor],
        carrier: &dyn Carrier,
        donor_colours: &[ColourProfile],
    ) -> Vec<Vec<f32>> {
        let from = Giving {
            apply: self,
            donors,
            colours: donor_colours,
        };
        recipients
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let mut t = t.to_vec();
                carrier.give(first + j, &mut t, &from);
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spray_store::space::SpaceRole;
    use spray_store::SPACES;

    #[test]
    fn every_test_has_its_file_and_every_suspect_space_its_tests() {
        let mut transferred = std::collections::BTreeSet::new();
        for &test in EvidenceTest::ALL {
            // Every test runs on some space.
            assert!(SPACES.iter().any(|s| tests_of(s).contains(&test)), "{test}");
            let p = probe(test);
            assert_eq!(p.test, test, "{test}: row of another test");
            assert!(transferred.insert((p.wording.transferred, test.name())));
            // Pixel-side tests have four pictures, the model-side one none.
            let pictured = p.wording.captions.iter().all(|c| !c.is_empty());
            let blank = p.wording.captions.iter().all(|c| c.is_empty());
            match p.method {
                Method::Pixels(_) => assert!(pictured, "{test}"),
                Method::ModelSide => assert!(blank, "{test}"),
            }
            // Its sentence names the group, the class and the rates.
            let told = Told {
                group: "cluster 7",
                class: "cat",
                region: "rows 0–1",
                images: 40,
                flip: 0.5,
                control_flip: 0.1,
                gain: 1.5,
                drop: 0.25,
                drop_rest: 0.0625,
            };
            let s = told.fill(p.wording.sentence);
            for part in ["cluster 7", "“cat”", "50%", "10%", "+1.50"] {
                assert!(s.contains(part), "{test}: {part} not in {s}");
            }
            assert!(!s.contains('{'), "{test}: a placeholder left in {s}");
        }
        for space in &SPACES {
            let tests = tests_of(space);
            // A suspect is exactly a space with tests; the baseline has none.
            assert_eq!(
                space.role == SpaceRole::Baseline,
                tests.is_empty(),
                "{}",
                space.name
            );
            // Its own test first, each test once, the model-side one for every suspect and
            // after every pixel-side one.
            let distinct: std::collections::BTreeSet<_> = tests.iter().collect();
            assert_eq!(distinct.len(), tests.len(), "{}", space.name);
            assert_eq!(is_tested(space), !tests.is_empty(), "{}", space.name);
            if let Some(own) = space.own_test {
                assert_eq!(tests[0], own);
                assert!(matches!(probe(own).method, Method::Pixels(_)));
                // The own test runs whatever the other tests' switches say; those follow them.
                let off = VerifySettings::own_tests_only();
                assert!(runs(space, own, &off), "{}", space.name);
                for &t in &tests[1..] {
                    assert_eq!(
                        runs(space, t, &off),
                        (probe(t).on)(&off),
                        "{}: {t}",
                        space.name
                    );
                }
            }
            let model_side: Vec<usize> = (0..tests.len())
                .filter(|&i| matches!(probe(tests[i]).method, Method::ModelSide))
                .collect();
            if !tests.is_empty() {
                assert_eq!(model_side, [tests.len() - 1], "{}", space.name);
            }
            // A group of explanations is also given by the tests that need no region: a
            // pattern or a colour cast the model uses is found in its maps or concept
            // spaces, not only in the colour statistics.
            if space.role == SpaceRole::Explanation {
                for t in [EvidenceTest::ColourTransfer, EvidenceTest::DetailTransfer] {
                    assert!(tests.contains(&t), "{}: {t}", space.name);
                }
            }
        }
    }

    #[test]
    fn placeholders_are_filled_once_and_unknown_ones_kept() {
        let told = Told {
            group: "cluster 1",
            class: "{flip}",
            region: "r0c0",
            images: 12,
            flip: 0.25,
            control_flip: 0.0,
            gain: -0.5,
            drop: 1.0,
            drop_rest: 0.004,
        };
        assert_eq!(
            told.fill("{group} of “{class}”: {flip} vs {control}, {gain}, {drop}/{drop_rest} on {images} {odd} {"),
            "cluster 1 of “{flip}”: 25% vs 0%, -0.50, 100%/0% on 12 {odd} {"
        );
    }

    #[test]
    fn a_donor_value_is_computed_once_and_known_ones_never() {
        let values = PerDonor::known(&[Rc::new(10)]);
        let mut calls = 0;
        for _ in 0..3 {
            assert_eq!(*values.get(0, || unreachable!()), 10);
            let v = values.get(2, || {
                calls += 1;
                7
            });
            assert_eq!(*v, 7);
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_class_cache_computes_once() {
        let cache = ClassCache::default();
        let mut calls = 0;
        for _ in 0..3 {
            let v = cache
                .get_or_try(EvidenceTest::DetailTransfer, || {
                    calls += 1;
                    Ok(vec![1.0f64, 2.0])
                })
                .unwrap();
            assert_eq!(*v, [1.0, 2.0]);
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn take_away_fills_each_mask_and_give_pastes_round_robin() {
        let bounds = [(0.0, 1.0); 3];
        let apply = Apply {
            width: 2,
            fill: Fill::Mean,
            seed: 0,
            bounds: &bounds,
        };
        // 3 channels of 1 × 2 pixels.
        let image = Tensor::from([1.0, 3.0, 1.0, 3.0, 1.0, 3.0]);
        let mask = vec![false, true];
        let taken = apply.take_away(
            std::slice::from_ref(&image),
            &regions::Regions::new(vec![mask.clone()]),
            &[0],
            &[],
            0,
        );
        assert_eq!(taken[0], vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let donors = vec![Tensor::from([9.0; 6]), Tensor::from([7.0; 6])];
        let carrier = regions::Regions::new(vec![mask.clone(), mask]);
        let given = apply.give(
            (&[image.clone(), image.clone(), image.clone()], 0),
            &donors,
            &carrier,
            &[],
        );
        let second: Vec<f32> = given.iter().map(|t| t[1]).collect();
        assert_eq!(second, [9.0, 7.0, 9.0]);
        assert!(given.iter().all(|t| t[0] == 1.0));
        // From position 1 on: the pairing of a transplant made at once.
        let later = apply.give((&[image.clone(), image.clone()], 1), &donors, &carrier, &[]);
        let second: Vec<f32> = later.iter().map(|t| t[1]).collect();
        assert_eq!(second, [7.0, 9.0]);
        // Only donor 1 gives: every recipient takes its pixels.
        let only = carrier.giving_from(vec![1]);
        let given = apply.give((&[image.clone(), image], 0), &donors, &only, &[]);
        assert!(given.iter().all(|t| t[1] == 7.0));
    }
}

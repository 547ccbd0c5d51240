//! [`EvidenceTest::ColourTransfer`]: no region — the group's colours (per-channel mean and
//! spread, then mean chroma, `perturb::transfer_colour`) are given to other classes' images, and the group's
//! own images take the colours of the class's other images; the control gives the other
//! images' colours. Why: a colour cast is spread over the whole image and has no region to
//! paste. Only a group whose colours stand apart from the rest of its class's beyond chance
//! is tested (`ClassColours::stands_apart`).

use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::chance::ChanceLevels;
use super::{Carrier, Giving, Method, Occluding, Plan, Probe, ProbeInput, Wording};
use crate::perturb::{transfer_colour, ColourProfile};
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::ColourTransfer,
    // The colour space's own test, and on every group of explanations too (relevance and
    // concept spaces), after their own tests. Why: a colour cast the model uses is found in
    // its concept space as well (photos-mobile's warm tint, concept-0 ARI 0.97), and a
    // region or detail test does not carry it.
    also_for: |space| space.role == SpaceRole::Explanation,
    // The switch of the other spaces' groups; a colour-space group is always given it.
    on: |settings| settings.colour_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "colours turn",
        captions: [
            "cluster member",
            "the rest's colours",
            "other class",
            "the group's colours",
        ],
        sentence: SENTENCE,
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = input
        .cache
        .get_or_try(EvidenceTest::ColourTransfer, || ClassColours::of(input))?;
    if !class.stands_apart(input.group, input.settings.seed) {
        return Ok(None);
    }
    Ok(Some(Plan {
        region: "colour".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(Colours),
        control: Box::new(Colours),
        second_control: None,
    }))
}

/// The whole image's colours: occlusion gives an image another's colours, a transplant
/// gives the recipient the donor's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Colours;

impl Carrier for Colours {
    fn take_away(&self, k: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        if !at.colours.is_empty() {
            let to = &at.colours[(k + at.shift) % at.colours.len()];
            transfer_colour(image, to, at.apply.bounds);
        }
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let d = j % from.donors.len();
        transfer_colour(recipient, &from.colours[d], from.apply.bounds);
    }

    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Colours)
    }
}

/// What an image's colours are to the screen: per channel its mean and the log of its spread,
/// then the log of its mean chroma — what the transfer gives (`ColourProfile`), the spreads
/// and chroma as shares of the channel's range, floored at 1/255 (a log, because a cast or a
/// gain scales them).
const FEATURES: usize = 7;

/// This test's own random subsets (`ChanceLevels`).
const CHANCE_SALT: u64 = 0xC010_0125_C4A2_CE00;

/// What the test computes once per class: each member's colour features, the class's
/// covariance of them (factored), and per group size the distance random subsets reach.
struct ClassColours {
    features: Vec<[f64; FEATURES]>,
    /// Their sum over the class.
    total: [f64; FEATURES],
    /// Lower Cholesky factor of the members' covariance (ridged); `None` for a class too
    /// small to have one.
    factor: Option<[[f64; FEATURES]; FEATURES]>,
    /// Per group size, the distance random subsets reach (`chance.rs`).
    chance: ChanceLevels,
}

impl ClassColours {
    fn of(input: &ProbeInput<'_>) -> Result<Self> {
        let features = input
            .members
            .iter()
            .map(|m| {
                let profile = input
                    .colours
                    .profile(m.image_index, || input.images.tensor(m.image_index))?;
                Ok(colour_features(&profile, input.bounds))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClassColours::with_features(features))
    }

    fn with_features(features: Vec<[f64; FEATURES]>) -> Self {
        let mut total = [0.0f64; FEATURES];
        features
            .iter()
            .for_each(|f| total.iter_mut().zip(f).for_each(|(t, v)| *t += v));
        let factor = (features.len() > FEATURES).then(|| cholesky(&covariance(&features)));
        ClassColours {
            features,
            total,
            factor: factor.flatten(),
            chance: ChanceLevels::new(CHANCE_SALT),
        }
    }

    /// Whether the members at `group` stand apart from the rest of the class in their colours
    /// beyond chance: their Hotelling distance (the two means' difference in the class's
    /// covariance, scaled by n_g·n_r / n) exceeds what seeded random subsets of the same size
    /// reach (`ChanceLevels::stands_apart`: all but 2 of 199). Why a screen: the control
    /// gives recipients the colours of the class's other images, so where the group's colours
    /// are theirs the test measures the same change twice and its effect is chance — on the
    /// seventeen scenarios, 37% of the test's images went to such groups, and every row of it at
    /// +0.33 or more stood at least 1.5 times above its chance level (benches/RESULTS.md). A
    /// class too small for a covariance (at most 7 members), or a group without a rest, is
    /// not screened.
    fn stands_apart(&self, group: &[usize], seed: u64) -> bool {
        let n = self.features.len();
        let Some(factor) = &self.factor else {
            return true;
        };
        let in_group: Vec<usize> = group.iter().copied().filter(|&i| i < n).collect();
        self.chance
            .stands_apart(n, &in_group, seed, |g| self.distance(factor, g))
    }

    /// Hotelling's two-sample distance of the members at `group` (distinct, within the class)
    /// from the others: n_g·n_r / n · δᵀ Σ⁻¹ δ, δ the difference of their mean features.
    fn distance(&self, factor: &[[f64; FEATURES]; FEATURES], group: &[usize]) -> f64 {
        let (n, total) = (self.features.len(), &self.total);
        let mut sum = [0.0f64; FEATURES];
        group.iter().for_each(|&i| {
            sum.iter_mut()
                .zip(&self.features[i])
                .for_each(|(s, v)| *s += v)
        });
        let (ng, nr) = (group.len() as f64, (n - group.len()) as f64);
        let delta: [f64; FEATURES] =
            std::array::from_fn(|k| sum[k] / ng - (total[k] - sum[k]) / nr);
        let z = forward_solve(factor, &delta);
        ng * nr / n as f64 * z.iter().map(|v| v * v).sum::<f64>()
    }
}

/// An image's [`FEATURES`] from its colour profile, spreads and chroma as shares of each
/// channel's range (`bounds`).
fn colour_features(profile: &ColourProfile, bounds: &[(f32, f32); 3]) -> [f64; FEATURES] {
    let floor = 1.0 / 255.0;
    std::array::from_fn(|k| match k {
        0..=2 => f64::from(profile.channels[k].0),
        3..=5 => {
            let (lo, hi) = bounds[k - 3];
            let range = f64::from((hi - lo).abs()).max(f64::EPSILON);
            (f64::from(profile.channels[k - 3].1) / range)
                .max(floor)
                .ln()
        }
        _ => f64::from(profile.chroma).max(floor).ln(),
    })
}

/// The features' covariance over the members, with a ridge of a millionth of its mean
/// variance on the diagonal: a feature constant over the class (a class of grey images'
/// chroma) then weighs nothing rather than making it singular.
fn covariance(features: &[[f64; FEATURES]]) -> [[f64; FEATURES]; FEATURES] {
    let n = features.len() as f64;
    let mean: [f64; FEATURES] =
        std::array::from_fn(|k| features.iter().map(|f| f[k]).sum::<f64>() / n);
    let mut c = [[0.0f64; FEATURES]; FEATURES];
    for f in features {
        for a in 0..FEATURES {
            for b in 0..FEATURES {
                c[a][b] += (f[a] - mean[a]) * (f[b] - mean[b]) / (n - 1.0);
            }
        }
    }
    let ridge = 1e-6 * (0..FEATURES).map(|k| c[k][k]).sum::<f64>() / FEATURES as f64 + 1e-12;
    (0..FEATURES).for_each(|k| c[k][k] += ridge);
    c
}

/// The lower Cholesky factor L of a symmetric positive definite `a` (L Lᵀ = a); `None` where
/// it is not (numerically) positive definite.
fn cholesky(a: &[[f64; FEATURES]; FEATURES]) -> Option<[[f64; FEATURES]; FEATURES]> {
    let mut l = [[0.0f64; FEATURES]; FEATURES];
    for i in 0..FEATURES {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// z with L z = v (so that zᵀz = vᵀ (L Lᵀ)⁻¹ v).
fn forward_solve(l: &[[f64; FEATURES]; FEATURES], v: &[f64; FEATURES]) -> [f64; FEATURES] {
    let mut z = [0.0f64; FEATURES];
    for i in 0..FEATURES {
        let s: f64 = (0..i).map(|k| l[i][k] * z[k]).sum();
        z[i] = (v[i] - s) / l[i][i];
    }
    z
}

const SENTENCE: &str =
    "Giving {images} images of other classes the colours (per-channel mean and spread, and \
         chroma) of {group}'s images turns {flip} of them into “{class}” (logit {gain} on average; the \
         colours of the class's other images: {control}); giving the group's own images the \
         colours of the class's other images lowers the logit by {drop} (by {drop_rest} in the \
         rest of the class).";

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic scatter in [-0.5, 0.5) for member `i`, feature `k`.
    fn jitter(i: usize, k: usize) -> f64 {
        let mut rng = spray_dataset::SplitMix64((i * FEATURES + k) as u64);
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Hand-computed: with a diagonal covariance the distance is n_g·n_r / n · Σ δ²/σ². Eight
    /// members, feature 0 is 1 for members 0–3 and 0 for 4–7 (variance 2/7), the others 0
    /// (ridged to nothing): group {0..3} has δ = 1, so 4·4/8 · 1/(2/7) = 7.
    #[test]
    fn the_distance_is_hotellings_two_sample_statistic() {
        let features: Vec<[f64; FEATURES]> = (0..8)
            .map(|i| std::array::from_fn(|k| if k == 0 && i < 4 { 1.0 } else { 0.0 }))
            .collect();
        let c = ClassColours::with_features(features);
        let factor = c.factor.expect("a covariance");
        let d = c.distance(&factor, &[0, 1, 2, 3]);
        assert!((d - 7.0).abs() < 1e-4, "{d}");
        // Half of each side: the means are equal.
        assert!(c.distance(&factor, &[0, 1, 4, 5]).abs() < 1e-9);
    }

    #[test]
    fn cholesky_factors_and_solves() {
        let mut a = [[0.0f64; FEATURES]; FEATURES];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if i == j { 4.0 } else { 1.0 };
            }
        }
        let l = cholesky(&a).unwrap();
        for i in 0..FEATURES {
            for j in 0..FEATURES {
                let llt: f64 = (0..FEATURES).map(|k| l[i][k] * l[j][k]).sum();
                assert!((llt - a[i][j]).abs() < 1e-12);
            }
        }
        // vᵀ a⁻¹ v for v = 1: a·1 = (4 + 6)·1, so a⁻¹·1 = 1/10 and vᵀ a⁻¹ v = 7/10.
        let z = forward_solve(&l, &[1.0; FEATURES]);
        assert!((z.iter().map(|v| v * v).sum::<f64>() - 0.7).abs() < 1e-12);
        a[0][0] = -1.0;
        assert!(cholesky(&a).is_none());
    }

    /// Sixty members scattered alike: twelve spread over the class do not stand apart. Cast
    /// twelve of them warm (red mean up, blue down by about one scatter's width) and those
    /// twelve do; the verdict is the same for the same seed.
    #[test]
    fn a_cast_group_stands_apart_and_a_random_one_does_not() {
        let members = |cast_of: fn(usize) -> bool| -> Vec<[f64; FEATURES]> {
            (0..60)
                .map(|i| {
                    std::array::from_fn(|k| {
                        let cast = match k {
                            0 if cast_of(i) => 0.3,
                            2 if cast_of(i) => -0.3,
                            _ => 0.0,
                        };
                        0.5 + 0.3 * jitter(i, k) + cast
                    })
                })
                .collect()
        };
        let spread: Vec<usize> = (0..60).step_by(5).collect();
        let plain = ClassColours::with_features(members(|_| false));
        assert!(!plain.stands_apart(&spread, 0));
        assert_eq!(
            plain.stands_apart(&spread, 7),
            plain.stands_apart(&spread, 7)
        );
        let cast: Vec<usize> = (0..12).collect();
        assert!(ClassColours::with_features(members(|i| i < 12)).stands_apart(&cast, 0));
    }

    /// A class of at most FEATURES members has no covariance to screen by, and a group
    /// without a rest has nothing to stand apart from: both are tested.
    #[test]
    fn a_small_class_or_a_whole_class_is_not_screened() {
        let same = |n: usize| ClassColours::with_features(vec![[0.5; FEATURES]; n]);
        assert!(same(FEATURES).stands_apart(&[0], 0));
        let c = ClassColours::with_features(
            (0..20)
                .map(|i| std::array::from_fn(|k| jitter(i, k)))
                .collect(),
        );
        assert!(c.stands_apart(&(0..20).collect::<Vec<_>>(), 0));
        assert!(c.stands_apart(&(0..19).collect::<Vec<_>>(), 0));
    }
}

//! Padding sensitivity (thesis §6.3.1): a class's images under the pipeline's preprocessing and
//! under each of the six ways of making an image square.

use spray_dataset::{Dataset, Preprocess, SquareMode};
use spray_store::verify::PaddingEffect;

use crate::images::decode;
use crate::members::{class_name, spread, Member};
use crate::scorer::{predicted, Scorer};
use crate::Result;

/// The six ways of making an image square of thesis §6.3.1.
pub const SQUARE_MODES: [SquareMode; 6] = [
    SquareMode::Border,
    SquareMode::Mirror,
    SquareMode::Crop,
    SquareMode::Noise,
    SquareMode::RandomColor,
    SquareMode::FixedColor,
];

/// A square mode's name as the table shows it (its kebab-case serde form).
pub(crate) fn mode_name(mode: SquareMode) -> String {
    serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{mode:?}"))
}

/// An image's logit of the class, and whether the class wins it.
type Outcome = (f32, bool);

/// Share of the outcomes the class wins.
fn accuracy(outcomes: &[Outcome]) -> f64 {
    outcomes.iter().filter(|o| o.1).count() as f64 / outcomes.len().max(1) as f64
}

/// Per class: `images` of its images under the pipeline's preprocessing and under each of the
/// six square modes (on square images every mode is the identity: changes are then zero).
pub fn padding_rows(
    scorer: &mut dyn Scorer,
    (dataset, preprocess): (&Dataset, &Preprocess),
    (class, members, classes): (i32, &[Member], &[String]),
    images: usize,
) -> Result<Vec<PaddingEffect>> {
    let chosen: Vec<&Member> = spread(&members.iter().collect::<Vec<_>>(), images);
    let k = class as usize;
    // Each image decoded once; a square one is what every mode leaves it (not prepared, not
    // scored again).
    let decoded = chosen
        .iter()
        .map(|m| decode(dataset, m.image_index))
        .collect::<Result<Vec<_>>>()?;
    // Under the pipeline's own preprocessing an image is what the relevance stage explained:
    // its class logit and prediction are that stage's (the same model on the same input),
    // not scored again.
    let base: Vec<Outcome> = chosen
        .iter()
        .map(|m| (m.class_logit, m.predicted == class))
        .collect();
    let accuracy_baseline = accuracy(&base);
    let mut rows = Vec::new();
    for mode in SQUARE_MODES {
        let mut pre = preprocess.clone();
        pre.square = mode;
        let changed = decoded
            .iter()
            .map(|(rgb, index)| {
                (rgb.width() != rgb.height()).then(|| pre.apply(rgb.clone(), *index).tensor)
            })
            .collect();
        let after = outcomes_of_changed(scorer, &base, changed, k)?;
        let change = base
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.0 - b.0) as f64)
            .sum::<f64>()
            / chosen.len().max(1) as f64;
        rows.push(PaddingEffect {
            class_index: class,
            class_name: class_name(classes, class),
            mode: mode_name(mode),
            images: chosen.len(),
            logit_change: change,
            accuracy: accuracy(&after),
            accuracy_baseline,
        });
    }
    Ok(rows)
}

/// The outcomes of class `k` under a mode: `changed` holds an image's tensor where the mode
/// changed it (scored), `None` where it left it as it is (its `base` outcome). Why: a square
/// image is the same under every square mode, and scoring it six more times was most of what
/// the table cost on square datasets.
fn outcomes_of_changed(
    scorer: &mut dyn Scorer,
    base: &[Outcome],
    changed: Vec<Option<Vec<f32>>>,
    k: usize,
) -> Result<Vec<Outcome>> {
    let (positions, tensors): (Vec<usize>, Vec<Vec<f32>>) = changed
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t?)))
        .unzip();
    let mut after = base.to_vec();
    for (i, l) in positions.into_iter().zip(scorer.logits(&tensors)?) {
        after[i] = (l[k], predicted(&l) == k);
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_named_as_the_table_shows_them() {
        let names: Vec<String> = SQUARE_MODES.iter().map(|&m| mode_name(m)).collect();
        assert_eq!(names.len(), 6);
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n == &n.to_lowercase()));
        assert_eq!(accuracy(&[(0.0, false), (2.0, true)]), 0.5);
    }

    /// Only the tensors a square mode changed are scored; the others keep their outcome.
    #[test]
    fn unchanged_images_are_not_scored_again() {
        let mut model = crate::scorer::fake::LinearModel {
            weights: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            scored: 0,
        };
        // Class 1's outcomes before: logits (1, 2), (3, 4), (5, 6).
        let base = vec![(2.0, true), (4.0, true), (6.0, true)];
        let only_the_second = vec![None, Some(vec![9.0, 4.0]), None];
        let after = outcomes_of_changed(&mut model, &base, only_the_second, 1).unwrap();
        assert_eq!(model.scored, 1);
        assert_eq!(after, vec![(2.0, true), (4.0, false), (6.0, true)]);
        let after = outcomes_of_changed(&mut model, &base, vec![None; 3], 1).unwrap();
        assert_eq!(after, base);
    }
}

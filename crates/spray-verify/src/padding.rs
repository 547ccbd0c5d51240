//! Padding sensitivity (thesis §6.3.1): a class's images under the pipeline's preprocessing and
//! under each of the six ways of making an image square.

use spray_dataset::{decode_rgb, Dataset, Preprocess, SquareMode};
use spray_store::verify::PaddingEffect;

use crate::members::{class_name, spread, Member};
use crate::scorer::{predicted, Scorer};
use crate::{Result, VerifyError};

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

/// Share of logit rows whose largest entry is class `k`.
fn accuracy(logits: &[Vec<f32>], k: usize) -> f64 {
    logits.iter().filter(|l| predicted(l) == k).count() as f64 / logits.len().max(1) as f64
}

/// Per class: `images` of its images under the pipeline's preprocessing and under each of the
/// six square modes (on square images every mode is the identity: changes are then zero).
pub fn padding_rows(
    scorer: &mut dyn Scorer,
    (dataset, preprocess): (&Dataset, &Preprocess),
    (class, members, classes): (i32, &[Member], &[String]),
    images: usize,
) -> Result<Vec<PaddingEffect>> {
    let chosen = spread(
        &members.iter().map(|m| m.image_index).collect::<Vec<_>>(),
        images,
    );
    let k = class as usize;
    // Each image decoded once; a square one is what every mode leaves it (not prepared again).
    let decoded = chosen
        .iter()
        .map(|&i| decode(dataset, i))
        .collect::<Result<Vec<_>>>()?;
    let prepare = |pre: &Preprocess| -> Vec<Vec<f32>> {
        decoded
            .iter()
            .map(|(rgb, index)| pre.apply(rgb.clone(), *index).tensor)
            .collect()
    };
    let originals = prepare(preprocess);
    let base = scorer.logits(&originals)?;
    let accuracy_baseline = accuracy(&base, k);
    let mut rows = Vec::new();
    for mode in SQUARE_MODES {
        let mut pre = preprocess.clone();
        pre.square = mode;
        let tensors = decoded
            .iter()
            .zip(&originals)
            .map(|((rgb, index), original)| {
                if rgb.width() == rgb.height() {
                    original.clone()
                } else {
                    pre.apply(rgb.clone(), *index).tensor
                }
            })
            .collect();
        let after = logits_of_changed(scorer, &originals, &base, tensors)?;
        let change = base
            .iter()
            .zip(&after)
            .map(|(b, a)| (a[k] - b[k]) as f64)
            .sum::<f64>()
            / chosen.len().max(1) as f64;
        rows.push(PaddingEffect {
            class_index: class,
            class_name: class_name(classes, class),
            mode: mode_name(mode),
            images: chosen.len(),
            logit_change: change,
            accuracy: accuracy(&after, k),
            accuracy_baseline,
        });
    }
    Ok(rows)
}

/// Image `image_index` of the dataset decoded, with the index its preprocessing seeds by.
fn decode(dataset: &Dataset, image_index: usize) -> Result<(image::RgbImage, u64)> {
    let sample = dataset
        .samples
        .get(image_index)
        .ok_or(VerifyError::UnknownImage(image_index))?;
    let rgb = decode_rgb(&sample.path).map_err(|reason| VerifyError::Decode {
        path: sample.path.display().to_string(),
        reason,
    })?;
    Ok((rgb, sample.index as u64))
}

/// The logits of `tensors`: scored where a tensor differs from its original, the original's
/// `base` logits where it is the same. Why: a square image is the same under every square
/// mode, and scoring it six more times was most of what the table cost on square datasets.
fn logits_of_changed(
    scorer: &mut dyn Scorer,
    originals: &[Vec<f32>],
    base: &[Vec<f32>],
    tensors: Vec<Vec<f32>>,
) -> Result<Vec<Vec<f32>>> {
    let changed: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i] != originals[i])
        .collect();
    let mut after = base.to_vec();
    let scored = scorer.logits(
        &tensors
            .into_iter()
            .enumerate()
            .filter(|(i, _)| changed.binary_search(i).is_ok())
            .map(|(_, t)| t)
            .collect::<Vec<_>>(),
    )?;
    for (i, l) in changed.into_iter().zip(scored) {
        after[i] = l;
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
        assert_eq!(accuracy(&[vec![0.0, 1.0], vec![2.0, 1.0]], 1), 0.5);
    }

    /// Only the tensors a square mode changed are scored; the others keep their logits.
    #[test]
    fn unchanged_images_are_not_scored_again() {
        let mut model = crate::scorer::fake::LinearModel {
            weights: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            scored: 0,
        };
        let originals = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
        let base = model.logits(&originals).unwrap();
        let changed = vec![vec![1.0, 2.0], vec![9.0, 4.0], vec![5.0, 6.0]];
        let after = logits_of_changed(&mut model, &originals, &base, changed.clone()).unwrap();
        assert_eq!(model.scored, 3 + 1);
        assert_eq!(after, model.logits(&changed).unwrap());
        let after = logits_of_changed(&mut model, &originals, &base, originals.clone()).unwrap();
        assert_eq!(after, base);
    }
}

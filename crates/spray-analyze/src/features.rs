//! Map preprocessing before the graph: optional Gaussian low-pass on the grid, sign handling,
//! normalisation.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignMode {
    /// Keep signed relevance.
    #[default]
    Signed,
    /// |R|.
    Absolute,
    /// max(R, 0).
    Positive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    None,
    /// Divide by the sum of absolute values (CoRelAy's per-map normalisation).
    #[default]
    L1,
    L2,
    /// Divide by the largest absolute value.
    Max,
}

/// Smooth a g×g map with a Gaussian of `sigma` cells (separable, edges renormalised).
pub fn gaussian_blur(map: &[f32], g: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return map.to_vec();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let pass = |input: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0.0; g * g];
        for y in 0..g {
            for x in 0..g {
                let (mut acc, mut wsum) = (0.0, 0.0);
                for (ki, d) in (-radius..=radius).enumerate() {
                    let (sx, sy) = if horizontal {
                        (x as isize + d, y as isize)
                    } else {
                        (x as isize, y as isize + d)
                    };
                    if sx < 0 || sy < 0 || sx >= g as isize || sy >= g as isize {
                        continue;
                    }
                    acc += kernel[ki] * input[sy as usize * g + sx as usize];
                    wsum += kernel[ki];
                }
                out[y * g + x] = acc / wsum;
            }
        }
        out
    };
    let input: Vec<f64> = map.iter().map(|&v| v as f64).collect();
    pass(&pass(&input, true), false)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

pub fn prepare(map: &[f32], g: usize, blur: f64, sign: SignMode, norm: Normalization) -> Vec<f32> {
    let mut v = gaussian_blur(map, g, blur);
    match sign {
        SignMode::Signed => {}
        SignMode::Absolute => v.iter_mut().for_each(|x| *x = x.abs()),
        SignMode::Positive => v.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
    let scale = match norm {
        Normalization::None => 1.0,
        Normalization::L1 => v.iter().map(|x| x.abs() as f64).sum::<f64>(),
        Normalization::L2 => v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt(),
        Normalization::Max => v.iter().fold(0.0f64, |a, x| a.max(x.abs() as f64)),
    };
    if scale > 0.0 && scale.is_finite() {
        v.iter_mut().for_each(|x| *x = (*x as f64 / scale) as f32);
    }
    v
}

/// Reorder the rows of a row-major `values` (rows of `d`) so that row i becomes the old row
/// `source[i]` (`source` a permutation), in place: the analysis holds the prepared maps of a
/// whole dataset once, and putting them in row order must not need a second copy (2 GB at
/// 1.28M maps of d = 400). Each cycle of the permutation is walked with one row of scratch.
pub fn gather_rows_in_place(values: &mut [f32], d: usize, source: &[usize]) {
    debug_assert_eq!(values.len(), d * source.len());
    let mut placed = vec![false; source.len()];
    let mut scratch = vec![0.0f32; d];
    for start in 0..source.len() {
        if placed[start] || source[start] == start {
            continue;
        }
        scratch.copy_from_slice(&values[start * d..(start + 1) * d]);
        let mut at = start;
        loop {
            placed[at] = true;
            let from = source[at];
            if from == start {
                values[at * d..(at + 1) * d].copy_from_slice(&scratch);
                break;
            }
            values.copy_within(from * d..(from + 1) * d, at * d);
            at = from;
        }
    }
}

/// A row of the concept column too short for the layer asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortConceptRow {
    /// The row's position among the rows given.
    pub row: usize,
    /// Its concept values.
    pub len: usize,
    /// The values the layer needs (the end of its range).
    pub expected: usize,
}

impl std::fmt::Display for ShortConceptRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "has {} concept values, expected at least {}",
            self.len, self.expected
        )
    }
}

/// One concept layer's features for a group: per row its channels in `range` of the concept
/// column, L1-normalised with their signs kept (a channel that argues against the class stays
/// negative), and the row's L1 mass before normalisation (the contrast's magnitude cue, as for
/// the maps). Why L1 and not the map's settings: the channel profile, not its size, says which
/// features carry the decision; measured against the unnormalised vectors and the positive
/// part on the scenario suite (benches/RESULTS.md). A row of zeros stays zeros.
pub fn concept_features(
    rows: &[Vec<f32>],
    range: std::ops::Range<usize>,
) -> Result<(ndarray16::Array2<f32>, Vec<f64>), ShortConceptRow> {
    let width = range.len();
    let mut out = ndarray16::Array2::<f32>::zeros((rows.len(), width));
    let mut mass = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let Some(values) = row.get(range.clone()) else {
            return Err(ShortConceptRow {
                row: i,
                len: row.len(),
                expected: range.end,
            });
        };
        let l1: f64 = values.iter().map(|v| v.abs() as f64).sum();
        mass.push(l1);
        if l1 > 0.0 {
            for (o, v) in out.row_mut(i).iter_mut().zip(values) {
                *o = (*v as f64 / l1) as f32;
            }
        }
    }
    Ok((out, mass))
}

/// The features of a space of per-image statistics (the colour space's
/// `relevance::colour_stats`, the compression space's statistics) for a group: each
/// value z-scored over the group's rows. Why z-scored: the statistics have unlike units (means
/// in [0, 1], log spreads around −3), and what sets a subgroup apart is how far it lies from
/// its own class, not the absolute value; a value that does not vary in the group stays 0.
pub fn z_scores(rows: &[&[f32]]) -> ndarray16::Array2<f32> {
    let width = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    let n = rows.len().max(1) as f64;
    let mut out = ndarray16::Array2::<f32>::zeros((rows.len(), width));
    for j in 0..width {
        let mean = rows.iter().map(|r| r[j] as f64).sum::<f64>() / n;
        let var = rows
            .iter()
            .map(|r| (r[j] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        if sd > 1e-9 {
            for (i, r) in rows.iter().enumerate() {
                out[[i, j]] = ((r[j] as f64 - mean) / sd) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_z_scored_within_the_group() {
        let a = [0.2f32, 1.0];
        let b = [0.4f32, 1.0];
        let c = [0.6f32, 1.0];
        let f = z_scores(&[&a, &b, &c]);
        // mean 0.4, population sd sqrt(0.08/3) = 0.163299
        let z = 0.2 / (0.08f64 / 3.0).sqrt();
        assert!((f[[0, 0]] as f64 + z).abs() < 1e-5);
        assert!(f[[1, 0]].abs() < 1e-6);
        assert!((f[[2, 0]] as f64 - z).abs() < 1e-5);
        // A constant statistic carries nothing.
        assert!(f.column(1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn normalisations() {
        let m = [1.0, -3.0, 0.0, 4.0];
        assert_eq!(
            prepare(&m, 2, 0.0, SignMode::Signed, Normalization::L1),
            vec![0.125, -0.375, 0.0, 0.5]
        );
        assert_eq!(
            prepare(&m, 2, 0.0, SignMode::Absolute, Normalization::Max),
            vec![0.25, 0.75, 0.0, 1.0]
        );
        assert_eq!(
            prepare(&m, 2, 0.0, SignMode::Positive, Normalization::None),
            vec![1.0, 0.0, 0.0, 4.0]
        );
        let l2 = prepare(&m, 2, 0.0, SignMode::Signed, Normalization::L2);
        assert!((l2.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        // all-zero maps stay zero instead of NaN
        assert_eq!(
            prepare(&[0.0; 4], 2, 0.0, SignMode::Signed, Normalization::L1),
            vec![0.0; 4]
        );
    }

    #[test]
    fn blur_keeps_constant_maps_and_spreads_peaks() {
        let c = gaussian_blur(&[2.0; 9], 3, 1.0);
        assert!(c.iter().all(|v| (v - 2.0).abs() < 1e-6));
        let mut peak = vec![0.0; 25];
        peak[12] = 1.0;
        let b = gaussian_blur(&peak, 5, 1.0);
        assert!(b[12] < 1.0 && b[11] > 0.0 && (b[11] - b[13]).abs() < 1e-7);
    }

    #[test]
    fn rows_are_gathered_in_place() {
        // rows tagged by their old index, d = 3
        let d = 3;
        let source = [4usize, 0, 3, 2, 1, 5];
        let mut v: Vec<f32> = (0..6).flat_map(|r| [r as f32; 3]).collect();
        gather_rows_in_place(&mut v, d, &source);
        let got: Vec<f32> = v.chunks(d).map(|row| row[0]).collect();
        assert_eq!(got, vec![4.0, 0.0, 3.0, 2.0, 1.0, 5.0]);
        assert!(v.chunks(d).all(|row| row.iter().all(|&x| x == row[0])));
        // the identity leaves it alone
        let before = v.clone();
        gather_rows_in_place(&mut v, d, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(v, before);
    }

    #[test]
    fn concept_features_are_l1_rows_of_their_layer_with_signs() {
        let rows = vec![vec![9.0, 1.0, -3.0, 0.0], vec![9.0, 0.0, 0.0, 0.0]];
        let (f, mass) = concept_features(&rows, 1..4).unwrap();
        assert_eq!(f.shape(), &[2, 3]);
        assert_eq!(f.row(0).to_vec(), vec![0.25, -0.75, 0.0]);
        assert_eq!(mass, vec![4.0, 0.0]);
        // A layer that carried no relevance stays a zero row, not NaN.
        assert_eq!(f.row(1).to_vec(), vec![0.0; 3]);
        assert_eq!(
            concept_features(&rows, 2..6).unwrap_err(),
            ShortConceptRow {
                row: 0,
                len: 4,
                expected: 6
            }
        );
    }
}

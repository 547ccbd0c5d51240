//! What a test that screens a class's groups by their images computes once per class: one
//! statistic of each member's image, and its mean over any of the members. The spectrum and
//! sharpness transfers choose their groups this way (fine energy, energy per octave).

use super::ProbeInput;
use crate::Result;

/// A statistic of each member's image, by member position.
pub(crate) struct MemberStatistics {
    rows: Vec<Vec<f64>>,
    /// The statistic's length (the mean's, where no member is averaged).
    width: usize,
}

impl MemberStatistics {
    /// `statistic` (`width` values) of each member's image, decoded one at a time: a class of
    /// thousands is never held at once.
    pub(crate) fn of(
        input: &ProbeInput<'_>,
        width: usize,
        statistic: impl Fn(&[f32]) -> Vec<f64>,
    ) -> Result<Self> {
        let rows = input
            .members
            .iter()
            .map(|m| Ok(statistic(&input.images.tensor(m.image_index)?)))
            .collect::<Result<Vec<Vec<f64>>>>()?;
        Ok(MemberStatistics { rows, width })
    }

    /// The mean over the members at `rows` (positions past the class are skipped; zeros where
    /// none is left).
    pub(crate) fn mean(&self, rows: impl IntoIterator<Item = usize>) -> Vec<f64> {
        let mut sum = vec![0.0f64; self.width];
        let mut n = 0usize;
        for row in rows.into_iter().filter_map(|i| self.rows.get(i)) {
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            n += 1;
        }
        sum.iter().map(|s| s / n.max(1) as f64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_is_over_the_rows_given_and_zero_over_none() {
        let stats = MemberStatistics {
            rows: vec![vec![1.0, 2.0], vec![3.0, 6.0], vec![5.0, 1.0]],
            width: 2,
        };
        assert_eq!(stats.mean([0, 1]), [2.0, 4.0]);
        assert_eq!(stats.mean([2, 7]), [5.0, 1.0]);
        assert_eq!(stats.mean([]), [0.0, 0.0]);
    }
}

//! What a test that screens a class's groups by their images computes once per class: one
//! statistic of each member's image, and its mean over any of the members. The spectrum,
//! sharpness, tone and coarse transfers choose their groups this way (fine energy, energy per
//! octave, histograms, colour variation). And, for a test that keeps sums rather than every
//! member's statistic (the shading and pattern transfers: a plane or a spectrum an image, the
//! pattern transfer's read in `class_power.rs`), the sum over any members and its arithmetic.

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

    /// Statistics already read, one row a member, each `width` values.
    pub(crate) fn from_rows(rows: Vec<Vec<f64>>, width: usize) -> Self {
        MemberStatistics { rows, width }
    }

    /// One value of each member's image (`statistic`), decoded one at a time, by member
    /// position: for a test that screens by a single number an image and needs each member's
    /// (the coarse transfer's colour variation, whose group-against-rest excess is measured
    /// again on each of chance's random subsets).
    pub(crate) fn scalars(
        input: &ProbeInput<'_>,
        statistic: impl Fn(&[f32]) -> f64,
    ) -> Result<Vec<f64>> {
        input
            .members
            .iter()
            .map(|m| Ok(statistic(&input.images.tensor(m.image_index)?)))
            .collect()
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

/// The sum over the members at `rows` (positions past the class are skipped) of `statistic`
/// (`width` values) of each one's image, decoded one at a time.
pub(crate) fn sum_over<T: Copy + Into<f64>>(
    input: &ProbeInput<'_>,
    rows: &[usize],
    width: usize,
    statistic: impl Fn(&[f32]) -> Vec<T>,
) -> Result<Vec<f64>> {
    let mut sum = vec![0.0f64; width];
    for m in rows.iter().filter_map(|&r| input.members.get(r)) {
        add_to(&mut sum, &statistic(&input.images.tensor(m.image_index)?));
    }
    Ok(sum)
}

/// `values` added to `sum`, element by element.
pub(crate) fn add_to<T: Copy + Into<f64>>(sum: &mut [f64], values: &[T]) {
    sum.iter_mut()
        .zip(values)
        .for_each(|(s, &v)| *s += v.into());
}

/// `a` less `b`, element by element: a class's sum less a group's is the rest's.
pub(crate) fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
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

    #[test]
    fn sums_add_and_subtract_element_by_element() {
        let mut sum = vec![1.0f64, 2.0];
        add_to(&mut sum, &[0.5f32, -1.0]);
        assert_eq!(sum, [1.5, 1.0]);
        assert_eq!(difference(&sum, &[1.0, 1.0]), [0.5, 0.0]);
    }
}

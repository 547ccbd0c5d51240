//! Whether a group's images stand apart from the rest of their class beyond chance, in some
//! statistic of a test's own: the group's value against the values of seeded random subsets
//! of the class of its size (a permutation test). Why: a test whose control gives recipients
//! what the rest of the class has measures the same change twice where the group has what
//! the rest has, and its effect is chance. The colour and fine-detail transfers screen their
//! groups this way.

use std::cell::RefCell;
use std::collections::BTreeMap;

use spray_dataset::SplitMix64;

/// Random subsets a group is ranked against; it stands apart where at most [`NULL_ABOVE`] of
/// them reach its value (p ≈ 0.015).
pub(crate) const NULL_DRAWS: usize = 199;
pub(crate) const NULL_ABOVE: usize = 2;

/// One test's chance levels in one class, per group size, computed once.
pub(crate) struct ChanceLevels {
    /// Mixed into the seed: each test draws its own subsets.
    salt: u64,
    by_size: RefCell<BTreeMap<usize, f64>>,
}

impl ChanceLevels {
    pub(crate) fn new(salt: u64) -> Self {
        ChanceLevels {
            salt,
            by_size: RefCell::default(),
        }
    }

    /// Whether `statistic` of the members at `group` (distinct positions below `n`, the
    /// class's size) exceeds what all but [`NULL_ABOVE`] of [`NULL_DRAWS`] random subsets of
    /// the same size reach (seeded by `seed`, the test and the size: the same for every group
    /// of that size). An empty group, one without at least two others, or one of a class too
    /// small to have [`NULL_DRAWS`] + 1 subsets of its size is not screened: it could never
    /// stand above them (a group of 3 in a class of 6 is one of 20).
    pub(crate) fn stands_apart(
        &self,
        n: usize,
        group: &[usize],
        seed: u64,
        statistic: impl Fn(&[usize]) -> f64,
    ) -> bool {
        self.margin(n, group, seed, statistic).is_some()
    }

    /// How far `statistic` of the members at `group` lies above the level random subsets of
    /// its size reach, where it stands apart ([`ChanceLevels::stands_apart`]); infinite for a
    /// group that is not screened. For a test that takes a class's groups furthest above
    /// chance first.
    pub(crate) fn margin(
        &self,
        n: usize,
        group: &[usize],
        seed: u64,
        statistic: impl Fn(&[usize]) -> f64,
    ) -> Option<f64> {
        let size = group.len();
        if size == 0 || size + 1 >= n || !subsets_exceed(n, size, NULL_DRAWS) {
            return Some(f64::INFINITY);
        }
        let level = *self
            .by_size
            .borrow_mut()
            .entry(size)
            .or_insert_with(|| self.level(n, size, seed, &statistic));
        let value = statistic(group);
        (value > level).then_some(value - level)
    }

    fn level(&self, n: usize, size: usize, seed: u64, statistic: impl Fn(&[usize]) -> f64) -> f64 {
        let mut rng = SplitMix64(seed ^ self.salt ^ (size as u64).rotate_left(32));
        let mut order: Vec<usize> = (0..n).collect();
        let mut reached: Vec<f64> = (0..NULL_DRAWS)
            .map(|_| {
                // The first `size` places of a partial Fisher–Yates shuffle.
                for i in 0..size {
                    let j = i + (rng.next_u64() % (n - i) as u64) as usize;
                    order.swap(i, j);
                }
                statistic(&order[..size])
            })
            .collect();
        reached.sort_by(f64::total_cmp);
        reached[NULL_DRAWS - 1 - NULL_ABOVE]
    }
}

/// Whether a set of `n` has more than `count` subsets of `size`.
fn subsets_exceed(n: usize, size: usize, count: usize) -> bool {
    let mut subsets = 1.0f64;
    for i in 0..size.min(n - size) {
        subsets = subsets * (n - i) as f64 / (i + 1) as f64;
        if subsets > count as f64 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statistic "how many of the group are among the first ten of a hundred": a group
    /// of the first ten stands apart, one spread over the class does not; the level is drawn
    /// once per size.
    #[test]
    fn a_group_beyond_its_random_subsets_stands_apart() {
        let chance = ChanceLevels::new(1);
        let first_ten = |g: &[usize]| g.iter().filter(|&&i| i < 10).count() as f64;
        assert!(chance.stands_apart(100, &(0..10).collect::<Vec<_>>(), 0, first_ten));
        assert!(!chance.stands_apart(100, &(0..100).step_by(10).collect::<Vec<_>>(), 0, first_ten));
        assert_eq!(chance.by_size.borrow().len(), 1);
    }

    #[test]
    fn a_group_without_a_rest_or_in_a_small_class_is_not_screened() {
        let chance = ChanceLevels::new(1);
        let never = |_: &[usize]| f64::NEG_INFINITY;
        assert!(chance.stands_apart(50, &[], 0, never));
        assert!(chance.stands_apart(50, &(0..49).collect::<Vec<_>>(), 0, never));
        assert!(!chance.stands_apart(50, &[0, 1, 2], 0, never));
        // 6 choose 3 = 20 subsets, 13 choose 3 = 286.
        assert!(chance.stands_apart(6, &[0, 1, 2], 0, never));
        assert!(!chance.stands_apart(13, &[0, 1, 2], 0, never));
        assert!(!subsets_exceed(6, 3, 199) && subsets_exceed(13, 3, 199));
        assert!(!subsets_exceed(200, 1, 200) && subsets_exceed(201, 200, 200));
    }
}

//! [`Repeats`]: which tests a class's groups were measured by, so that none is measured twice
//! on nearly the same images.

use spray_store::EvidenceTest;

use crate::groups::jaccard;

/// The tests a class's groups were measured by so far, each with its group's members (and,
/// for the model-side test, its layer). Why: two spaces' names for nearly the same images (a
/// concept layer's cluster that the relevance maps found too; `same_group_overlap`, Jaccard)
/// given the same test are the same measurement twice. Groups of spaces with the same tests
/// are merged before (`groups::class_groups`); a relevance group and a concept group are not,
/// since their own tests differ, but every test they share runs on the first only. On
/// held-resnet-n the caption's relevance cluster and a concept layer's split side (Jaccard
/// 0.94) each went to 90 recipients by the fine-detail transfer (benches/RESULTS.md).
pub(super) struct Repeats<'g> {
    overlap: f64,
    done: Vec<(TestAt, &'g [usize])>,
}

/// A test, and for the model-side test its layer.
pub(super) type TestAt = (EvidenceTest, Option<usize>);

impl<'g> Repeats<'g> {
    pub(super) fn new(overlap: f64) -> Self {
        Repeats {
            overlap,
            done: Vec::new(),
        }
    }

    /// Whether `test` (at a layer) was measured on a group of nearly `members` already.
    pub(super) fn seen(&self, test: TestAt, members: &[usize]) -> bool {
        self.done
            .iter()
            .any(|&(t, m)| t == test && jaccard(m, members) >= self.overlap)
    }

    /// Records that `test` (at a layer) was measured on `members`.
    pub(super) fn record(&mut self, test: TestAt, members: &'g [usize]) {
        self.done.push((test, members));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test is measured once on nearly the same images (Jaccard 0.9 or more), under the
    /// name it met first; another test, another layer, or a group that differs more is
    /// measured again.
    #[test]
    fn a_test_is_measured_once_on_nearly_the_same_images() {
        let (ten, eleven, other): (Vec<usize>, Vec<usize>, Vec<usize>) =
            ((0..10).collect(), (0..11).collect(), (0..12).collect());
        let mut measured = Repeats::new(0.9);
        let detail = (EvidenceTest::DetailTransfer, None);
        assert!(!measured.seen(detail, &ten));
        measured.record(detail, &ten);
        // 10 of 11 shared: the same measurement.
        assert!(measured.seen(detail, &eleven));
        // 10 of 12: measured again.
        assert!(!measured.seen(detail, &other));
        assert!(!measured.seen((EvidenceTest::TextureTransfer, None), &eleven));
        let direction = |layer| (EvidenceTest::FeatureDirection, Some(layer));
        assert!(!measured.seen(direction(0), &ten));
        measured.record(direction(0), &ten);
        assert!(measured.seen(direction(0), &eleven));
        assert!(!measured.seen(direction(1), &eleven));
    }
}

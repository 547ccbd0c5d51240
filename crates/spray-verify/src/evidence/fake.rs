//! What the tests of every test file measure with: a class's evidence on in-memory images.

use super::*;
use crate::examples::fake::NoPictures;
use crate::images::fake::Images;

/// Class 0's evidence ("zero") under `settings`, scored by `scorer`, on images of
/// `size` whose maps are pooled to a `grid` × `grid` grid, pixel values 0–1.
pub(crate) fn class_zero_evidence(
    scorer: &mut dyn Scorer,
    (images, by_class, analysed): (&Images, &MembersByClass, &AnalysedGroups),
    (settings, logits): (&VerifySettings, &KnownLogits),
    (grid, size): (usize, [usize; 2]),
) -> Vec<Evidence> {
    let mut bench = Bench {
        scorer,
        images,
        settings,
        grid,
        size,
        bounds: [(0.0, 1.0); 3],
        pictures: &NoPictures,
        logits,
    };
    class_evidence(&mut bench, (0, "zero"), by_class, analysed).unwrap()
}

/// Class 0's evidence among `tensors` of `side` × `side` pixels scored by `scorer`: the
/// first `class0` images class 0, of which the first `group` are one relevance cluster
/// (maps even over a 2 × 2 grid) and the others another (maps on the last cell).
pub(crate) fn class_zero_of(
    scorer: &mut dyn Scorer,
    tensors: Vec<Vec<f32>>,
    (class0, group): (usize, usize),
    settings: &VerifySettings,
    side: usize,
) -> Vec<Evidence> {
    let logits = scorer.logits(&tensors).unwrap();
    let (by_class, analysed) = crate::members::two_classes_of(&logits, (class0, group), |i| {
        if i < group {
            vec![0.25; 4]
        } else {
            vec![0.0, 0.0, 0.0, 1.0]
        }
    });
    class_zero_evidence(
        scorer,
        (&Images(tensors), &by_class, &analysed),
        (settings, &KnownLogits::new()),
        (2, [side, side]),
    )
}

/// The rows of `test` among `rows`.
pub(crate) fn rows_of(rows: &[Evidence], test: EvidenceTest) -> Vec<&Evidence> {
    rows.iter().filter(|r| r.test == test).collect()
}

/// The row of `test` for the group named `group` (a test's file names the group it must
/// have tested).
pub(crate) fn row_of<'r>(rows: &'r [Evidence], test: EvidenceTest, group: &str) -> &'r Evidence {
    rows.iter()
        .find(|r| r.test == test && r.group().name() == group)
        .unwrap_or_else(|| panic!("{test:?} tests {group}"))
}

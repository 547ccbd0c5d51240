//! Which classes are suspicious: the ranking of the analysis' relevance-space spectra and the
//! flag rule. The report shows them and the verify stage tests them, so both read this one
//! definition.

use crate::analysis::ClassSpectrum;

/// One row of the class ranking (relevance space, with the image baseline beside it).
#[derive(Debug, Clone)]
pub struct RankedClass {
    pub rank: usize,
    pub spectrum: ClassSpectrum,
    pub baseline: Option<ClassSpectrum>,
}

/// Rank classes by their relevance-space score (descending; ties by class index).
pub fn rank(spectra: &[ClassSpectrum]) -> Vec<RankedClass> {
    let mut relevance: Vec<&ClassSpectrum> = spectra
        .iter()
        .filter(|s| s.space == crate::FeatureSpace::Relevance)
        .collect();
    // Ties (e.g. several disconnected classes at λ2 = 0) go to more zero eigenvalues, then
    // the larger eigengap, then the class index.
    relevance.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.near_zero.cmp(&a.near_zero))
            .then(b.largest_gap.total_cmp(&a.largest_gap))
            .then(a.class_index.cmp(&b.class_index))
    });
    relevance
        .into_iter()
        .enumerate()
        .map(|(i, s)| RankedClass {
            rank: i + 1,
            spectrum: s.clone(),
            baseline: spectra
                .iter()
                .find(|b| b.space == crate::FeatureSpace::Image && b.class_index == s.class_index)
                .cloned(),
        })
        .collect()
}

/// A class is flagged when its strongest cluster (`ClusterContrast`) is cut off in the kNN
/// graph (separation at least `FLAG_SEPARATION`: at most a tenth of its edges leave it) and
/// its maps carry a different relevance mass than the rest of the class (mean log mass
/// shifted by at least `FLAG_MAGNITUDE_SHIFT` standard deviations). Natural modes of a class
/// usually pass the first test and fail the second; the report shows both numbers.
pub const FLAG_SEPARATION: f64 = 0.9;
pub const FLAG_MAGNITUDE_SHIFT: f64 = 1.0;

/// The classes flagged as suspicious (see `FLAG_SEPARATION`), in ranking order.
pub fn flag(ranking: &[RankedClass]) -> Vec<String> {
    ranking
        .iter()
        .filter(|r| is_flagged(&r.spectrum))
        .map(|r| r.spectrum.class_name.clone())
        .collect()
}

/// The flag rule for one class.
pub fn is_flagged(spectrum: &ClassSpectrum) -> bool {
    let c = &spectrum.contrast;
    c.cluster >= 0
        && c.separation >= FLAG_SEPARATION
        && c.magnitude_shift.abs() >= FLAG_MAGNITUDE_SHIFT
}

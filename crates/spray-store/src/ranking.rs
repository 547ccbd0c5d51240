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

/// The classes flagged as suspicious: λ2 at most half the median λ2 of all classes (their
/// explanations fall into groups with a weak cut between them, compared with the other
/// classes of the same run), or several zero eigenvalues (disconnected groups).
pub fn flag(ranking: &[RankedClass]) -> Vec<String> {
    if ranking.is_empty() {
        return Vec::new();
    }
    let mut l2: Vec<f64> = ranking.iter().map(|r| r.spectrum.lambda2).collect();
    l2.sort_by(f64::total_cmp);
    let median = l2[l2.len() / 2];
    ranking
        .iter()
        .filter(|r| r.spectrum.lambda2 <= 0.5 * median || r.spectrum.near_zero >= 2)
        .map(|r| r.spectrum.class_name.clone())
        .collect()
}

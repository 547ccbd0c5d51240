//! The stage's errors, one variant per thing a caller could act on differently: a setting to
//! change, an input to rebuild, an output folder to clear, features to fix upstream, a bug.

use spray_store::FeatureSpace;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error("eigendecomposition: {0}")]
    Eigen(String),
    #[error("clustering: {0}")]
    Cluster(String),
    /// An `[analysis]` setting the stage cannot run with, or one the relevance dataset
    /// cannot serve: change the setting (or what stage 1 stores).
    #[error("analysis.{key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
    /// A relevance part lacks what its manifest promises the analysis, or holds it in another
    /// shape (the part changed since it was written or read?): rebuild the relevance stage.
    #[error("{path}: {reason}")]
    CorruptInput { path: String, reason: String },
    /// Maps handed over in memory (`analyze_maps`) whose values, labels and shape disagree.
    #[error("maps in memory: {0}")]
    MapShape(String),
    /// The relevance dataset is complete but holds no maps: stage 1 skipped every input.
    #[error(
        "{dir} holds no relevance maps: every input was skipped (the reasons are in its \
         errors-*.parquet files and in `spray relevance`'s summary)"
    )]
    NoMaps { dir: String },
    /// The output folder holds an analysis with another fingerprint; it is not overwritten.
    #[error(
        "{dir} holds an analysis of other inputs or settings; use another folder or rerun \
         with --force analyze"
    )]
    StaleOutput { dir: String },
    /// Features with NaN or ∞: analysing them would give a meaningless spectrum.
    #[error(
        "{group} ({space} space): {count} of {total} samples have NaN or infinite features \
         ({}); refusing to analyse them",
        listed(.samples, *.count)
    )]
    NonFinite {
        group: String,
        space: FeatureSpace,
        /// Rows with a NaN or ∞ feature.
        count: usize,
        /// Rows of the group.
        total: usize,
        /// The first few of them, by sample id (or row when the id is unknown).
        samples: Vec<String>,
    },
    /// Serialising the stage's own JSON failed.
    #[error("serialising {what}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A broken invariant of the analysis itself: a bug, not a bad input.
    #[error("internal error in the analysis: {0}")]
    Internal(String),
}

pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;

/// `'a', 'b', …`: the samples shown, with an ellipsis when `count` has more.
fn listed(samples: &[String], count: usize) -> String {
    let more = if count > samples.len() { ", …" } else { "" };
    format!("{}{more}", samples.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn non_finite_names_the_group_the_space_and_the_samples() {
        let err = AnalyzeError::NonFinite {
            group: "cat".into(),
            space: FeatureSpace::Colour,
            count: 7,
            total: 40,
            samples: vec!["'a'".into(), "'b'".into()],
        };
        assert_eq!(
            err.to_string(),
            "cat (colour space): 7 of 40 samples have NaN or infinite features ('a', 'b', …); \
             refusing to analyse them"
        );
        let all = AnalyzeError::NonFinite {
            group: "cat".into(),
            space: FeatureSpace::Relevance,
            count: 1,
            total: 40,
            samples: vec!["row 3".into()],
        };
        assert!(all.to_string().contains("(row 3);"), "{all}");
    }

    #[test]
    fn a_cause_is_printed_once() {
        let source = serde_json::from_str::<u8>("x").unwrap_err();
        let cause = source.to_string();
        let err = AnalyzeError::Serialize {
            what: "the analysis manifest",
            source,
        };
        assert!(!err.to_string().contains(&cause), "{err}");
        assert_eq!(err.source().map(|s| s.to_string()), Some(cause));
    }
}

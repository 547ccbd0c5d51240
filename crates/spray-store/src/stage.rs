//! Where each stage stands in its folder, judged from the files the stage contract names —
//! the one place that knows what "complete" means for relevance parts, analysis groups, the
//! verify tables and the report page. `spray-pipeline` decides what to run from these states.
//!
//! Every stage folder holds a JSON file with the stage's fingerprint (its cache key); the
//! stage writes it before its work (relevance, analysis, verify: the units to do) or after
//! (report: the completion mark), never half-written (atomic rename).

use std::path::{Path, PathBuf};

use crate::{analysis, relevance, write_atomically, Result};

/// A stage folder's state for a given fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Nothing of the stage is there.
    Absent,
    /// Results of other inputs or settings: they must be cleared before the stage runs.
    Stale,
    /// Some of the stage's work units are done (a killed run, or other shards still running).
    Partial,
    Complete,
}

/// What a run did with one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    /// Computed from scratch.
    Ran,
    /// Complete with the same fingerprint: nothing to do.
    Cached,
    /// Finished work units from an earlier run were kept and the rest computed.
    Resumed,
    /// This shard's share is done; other shards still have work.
    Partial,
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StageStatus::Ran => "ran",
            StageStatus::Cached => "cached",
            StageStatus::Resumed => "resumed",
            StageStatus::Partial => "partial",
        })
    }
}

/// The `fingerprint` field of a stage's JSON file, if it is there and readable.
pub fn stored_fingerprint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("fingerprint")?.as_str().map(str::to_owned)
}

/// Write `{"fingerprint": …}` to `path` atomically: the mark that a stage is complete.
pub fn write_completion_mark(path: &Path, fingerprint: &str) -> Result<()> {
    write_atomically(
        path,
        serde_json::json!({ "fingerprint": fingerprint })
            .to_string()
            .as_bytes(),
    )
}

fn judge(mark: &Path, fingerprint: &str, complete: impl FnOnce() -> bool) -> StageState {
    match stored_fingerprint(mark) {
        None => StageState::Absent,
        Some(f) if f != fingerprint => StageState::Stale,
        Some(_) if complete() => StageState::Complete,
        Some(_) => StageState::Partial,
    }
}

/// `<out>/relevance`: complete when every part the manifest lists is there.
pub fn relevance_state(dir: &Path, fingerprint: &str) -> StageState {
    judge(&relevance::manifest_path(dir), fingerprint, || {
        relevance::finished_parts(dir).is_ok()
    })
}

/// `<out>/analysis`: complete when every group the manifest lists has its spectrum.
pub fn analysis_state(dir: &Path, fingerprint: &str) -> StageState {
    judge(&analysis::manifest_path(dir), fingerprint, || {
        analysis::finished_groups(dir).is_ok()
    })
}

/// `<out>/verify`: `_verify.json` (the fingerprint and the classes to do) is written first,
/// one file per finished part of a class under `units/`, and `evidence.csv` when all are
/// assembled: it marks the stage complete. A folder without `_verify.json` is partial (an older layout).
pub fn verify_state(dir: &Path, fingerprint: &str) -> StageState {
    match judge(&verify_manifest_path(dir), fingerprint, || {
        verify_evidence_path(dir).is_file()
    }) {
        StageState::Absent if dir.exists() => StageState::Partial,
        state => state,
    }
}

/// `<out>/report`: complete when the page and the completion mark are there.
pub fn report_state(dir: &Path, fingerprint: &str) -> StageState {
    match judge(&report_manifest_path(dir), fingerprint, || {
        report_index_path(dir).is_file()
    }) {
        StageState::Absent if dir.exists() => StageState::Partial,
        state => state,
    }
}

pub use crate::verify::{
    evidence_path as verify_evidence_path, manifest_path as verify_manifest_path,
};

/// `<out>/report/_report.json`, written last.
pub fn report_manifest_path(dir: &Path) -> PathBuf {
    dir.join("_report.json")
}

/// `<out>/report/index.html`.
pub fn report_index_path(dir: &Path) -> PathBuf {
    dir.join("index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_with_another_fingerprint_is_stale_and_a_missing_page_partial() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report");
        assert_eq!(report_state(&report, "a"), StageState::Absent);
        std::fs::create_dir_all(&report).unwrap();
        assert_eq!(report_state(&report, "a"), StageState::Partial);
        write_completion_mark(&report_manifest_path(&report), "a").unwrap();
        assert_eq!(report_state(&report, "a"), StageState::Partial);
        std::fs::write(report_index_path(&report), "<html>").unwrap();
        assert_eq!(report_state(&report, "a"), StageState::Complete);
        assert_eq!(report_state(&report, "b"), StageState::Stale);
        assert_eq!(
            stored_fingerprint(&report_manifest_path(&report)).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn analysis_is_complete_when_every_listed_group_has_its_spectrum() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = analysis::AnalysisManifest {
            fingerprint: "f".into(),
            groups: vec![0, 1],
        };
        write_atomically(
            &analysis::manifest_path(dir.path()),
            serde_json::to_string(&manifest).unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(analysis_state(dir.path(), "f"), StageState::Partial);
        for g in [0, 1] {
            std::fs::write(analysis::spectrum_path(dir.path(), g), b"x").unwrap();
        }
        assert_eq!(analysis_state(dir.path(), "f"), StageState::Complete);
        assert_eq!(analysis_state(dir.path(), "g"), StageState::Stale);
    }
}

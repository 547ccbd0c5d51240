//! The output folder: the analysis's fingerprint, claiming the folder (refusing one that
//! holds an analysis of other inputs or settings, writing the manifest), and which groups are
//! still to do.

use std::path::Path;

use spray_store::analysis::{manifest_path, spectrum_path, AnalysisManifest};
use spray_store::{Shard, StageKey};

use crate::error::{AnalyzeError, Result};
use crate::settings::AnalysisSettings;

/// The analysis's fingerprint: the relevance dataset's and the settings.
pub fn fingerprint(relevance_fingerprint: &str, settings: &AnalysisSettings) -> String {
    StageKey::new(
        &[relevance_fingerprint],
        Some(("analysis", spray_store::analysis::SCHEMA_VERSION)),
    )
    .settings(settings)
    .finish()
}

/// Makes `dir` the home of the analysis with `fingerprint` over `groups` (class indices, −1
/// for all samples, in order): created when missing, refused when it holds another analysis
/// (the writer's own guard; the pipeline clears a stale folder first), its manifest written.
pub(crate) fn claim(dir: &Path, fingerprint: String, groups: &[i32]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        AnalyzeError::Store(spray_store::StoreError::Io {
            path: dir.display().to_string(),
            source: e,
        })
    })?;
    if spray_store::stage::analysis_state(dir, &fingerprint) == spray_store::StageState::Stale {
        return Err(AnalyzeError::StaleOutput {
            dir: dir.display().to_string(),
        });
    }
    let manifest = AnalysisManifest {
        fingerprint,
        groups: groups.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| AnalyzeError::Serialize {
        what: "the analysis manifest",
        source,
    })?;
    spray_store::write_atomically(&manifest_path(dir), &json)?;
    Ok(())
}

/// This shard's groups (group i belongs to shard i mod n), and those of them not yet written
/// to `dir`, both in order.
pub(crate) fn shard_groups(dir: &Path, groups: &[i32], shard: Shard) -> (Vec<i32>, Vec<i32>) {
    let mine: Vec<i32> = groups
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.owns(*i))
        .map(|(_, &class)| class)
        .collect();
    let todo = mine
        .iter()
        .copied()
        .filter(|&class| !spectrum_path(dir, class).is_file())
        .collect();
    (mine, todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_another_analysis_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("analysis");
        claim(&dir, "one".into(), &[0, 1]).unwrap();
        let written: AnalysisManifest =
            serde_json::from_slice(&std::fs::read(manifest_path(&dir)).unwrap()).unwrap();
        assert_eq!(written.fingerprint, "one");
        assert_eq!(written.groups, vec![0, 1]);
        // the same analysis again: resumed
        claim(&dir, "one".into(), &[0, 1]).unwrap();
        let err = claim(&dir, "two".into(), &[0, 1]).unwrap_err();
        assert!(matches!(err, AnalyzeError::StaleOutput { .. }), "{err}");
        assert!(err.to_string().contains("--force analyze"), "{err}");
    }

    #[test]
    fn a_shard_does_its_own_unwritten_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let groups = [0, 1, 2, 3, 4];
        std::fs::write(spectrum_path(tmp.path(), 2), b"").unwrap();
        let (mine, todo) = shard_groups(tmp.path(), &groups, Shard::ALL);
        assert_eq!(mine, groups);
        assert_eq!(todo, vec![0, 1, 3, 4]);
        let second: Shard = "1/2".parse().unwrap();
        let (mine, todo) = shard_groups(tmp.path(), &groups, second);
        assert_eq!(mine, vec![1, 3]);
        assert_eq!(todo, vec![1, 3]);
    }

    #[test]
    fn the_fingerprint_follows_the_settings() {
        let settings = AnalysisSettings::default();
        let other = AnalysisSettings {
            grid: 7,
            ..AnalysisSettings::default()
        };
        assert_eq!(fingerprint("r", &settings), fingerprint("r", &settings));
        assert_ne!(fingerprint("r", &settings), fingerprint("r", &other));
        assert_ne!(fingerprint("r", &settings), fingerprint("s", &settings));
    }
}

//! The verify stage's work unit is a class, in two parts ([`UnitPart`]): its groups'
//! evidence, written to `units/class-<index>.evidence.toml`, and its tables — padding rows
//! and AOPC row — to `units/class-<index>.tables.toml`, each when finished. A class is done
//! when both are there. A rerun keeps finished parts (resume), `--shard i/n` takes the
//! classes at positions ≡ i (mod n), and whichever process finds every part present
//! assembles the tables. `_verify.json` lists the units under the stage's fingerprint;
//! `evidence.csv`, written last, marks the stage complete.
//!
//! Units are TOML, not JSON: Rust's float formatting and parsing round-trip exactly, so the
//! assembled tables are bit-for-bit what one process computes (serde_json's default float
//! parser is off by an ulp now and then).

use std::path::{Path, PathBuf};

use super::{manifest_path, Aopc, Evidence, PaddingEffect};
use crate::io::io_err;
use crate::{Result, StoreError};

/// What the stage found for one class, or one part of it (the other part's rows empty).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassUnit {
    pub class_index: i32,
    /// Empty unless the class is among the tested ones (flagged or top by score).
    pub evidence: Vec<Evidence>,
    pub padding: Vec<PaddingEffect>,
    pub aopc: Vec<Aopc>,
}

impl ClassUnit {
    /// A unit of `class_index` without rows, for a part to fill its own.
    pub fn empty(class_index: i32) -> Self {
        ClassUnit {
            class_index,
            evidence: Vec::new(),
            padding: Vec::new(),
            aopc: Vec::new(),
        }
    }
}

/// The two parts of a class's unit, computed and written apart. Why: a class's tables need
/// nothing of its evidence, and the stage hands every class's evidence out before any
/// class's tables, so the worker that runs out of evidence first scores tables while the
/// others finish theirs (one worker stood idle for 5–13% of the stage while the last class
/// ran, benches/RESULTS.md, stop 54).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnitPart {
    /// The groups' evidence rows.
    Evidence,
    /// The padding rows and the AOPC row.
    Tables,
}

impl UnitPart {
    pub const ALL: [UnitPart; 2] = [UnitPart::Evidence, UnitPart::Tables];

    fn file_tag(self) -> &'static str {
        match self {
            UnitPart::Evidence => "evidence",
            UnitPart::Tables => "tables",
        }
    }
}

/// `_verify.json`: the fingerprint and the units (class indices, in order).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerifyManifest {
    pub fingerprint: String,
    pub units: Vec<i32>,
}

/// `<out>/verify/units/class-<index>.<part>.toml`.
pub fn unit_path(dir: &Path, class_index: i32, part: UnitPart) -> PathBuf {
    dir.join("units")
        .join(format!("class-{class_index:05}.{}.toml", part.file_tag()))
}

/// Whether both parts of the class's unit are written.
pub fn unit_done(dir: &Path, class_index: i32) -> bool {
    UnitPart::ALL
        .iter()
        .all(|&part| unit_path(dir, class_index, part).is_file())
}

pub fn write_unit(dir: &Path, unit: &ClassUnit, part: UnitPart) -> Result<()> {
    let path = unit_path(dir, unit.class_index, part);
    let text = toml::to_string(unit).map_err(|e| StoreError::Encode {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    // write_atomically creates `units/` when needed.
    crate::write_atomically(&path, text.as_bytes())
}

pub fn read_unit(dir: &Path, class_index: i32, part: UnitPart) -> Result<ClassUnit> {
    let path = unit_path(dir, class_index, part);
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    toml::from_str(&text).map_err(|e| StoreError::Schema {
        path: path.display().to_string(),
        column: "(unit)".into(),
        message: e.to_string(),
    })
}

/// Write `_verify.json` unless it is there for this fingerprint (every shard writes the same).
pub fn write_manifest(dir: &Path, manifest: &VerifyManifest) -> Result<()> {
    let path = manifest_path(dir);
    let existing = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<VerifyManifest>(&t).ok());
    match &existing {
        Some(e) if e == manifest => return Ok(()),
        // Units of other inputs or settings are never mixed with these (the pipeline clears a
        // stale folder before the stage runs).
        Some(e) if e.fingerprint != manifest.fingerprint => {
            return Err(StoreError::Foreign {
                dir: dir.display().to_string(),
                stage: "verify",
            })
        }
        _ => {}
    }
    let bytes = serde_json::to_vec(manifest).map_err(|e| StoreError::Encode {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    crate::write_atomically(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_another_fingerprint_is_refused_and_the_same_one_kept() {
        let dir = std::env::temp_dir().join(format!("spray-units-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let manifest = |f: &str| VerifyManifest {
            fingerprint: f.into(),
            units: vec![0, 1],
        };
        write_manifest(&dir, &manifest("a")).unwrap();
        write_manifest(&dir, &manifest("a")).unwrap();
        let err = write_manifest(&dir, &manifest("b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("other inputs or settings"), "{err}");
        assert!(err.contains("--force verify"), "{err}");
        let unit = ClassUnit::empty(1);
        write_unit(&dir, &unit, UnitPart::Evidence).unwrap();
        assert_eq!(read_unit(&dir, 1, UnitPart::Evidence).unwrap(), unit);
        assert!(!unit_done(&dir, 1));
        write_unit(&dir, &unit, UnitPart::Tables).unwrap();
        assert!(unit_done(&dir, 1));
        assert!(read_unit(&dir, 0, UnitPart::Tables)
            .unwrap_err()
            .to_string()
            .contains("class-00000.tables.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The one way a stage's cache key is built: SHA-256 over its inputs' fingerprints, its
//! settings (as JSON) and the spray version, in a fixed order. A stage's key chains the key of
//! the stage it reads, so a change anywhere upstream invalidates everything downstream.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::io::io_err;
use crate::Result;

/// A SHA-256 fingerprint under construction.
#[derive(Clone, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new() -> Self {
        Fingerprint(Sha256::new())
    }

    /// Raw bytes (an upstream fingerprint, a name, a separator).
    pub fn bytes(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.0.update(bytes.as_ref());
        self
    }

    /// Settings, by their JSON form (field order is the struct's, so stable).
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        self.bytes(serde_json::to_vec(value).unwrap_or_default())
    }

    /// The spray version: a new spray may compute different values from the same inputs.
    pub fn spray_version(self) -> Self {
        self.bytes(env!("CARGO_PKG_VERSION"))
    }

    /// Lower-case hex digest.
    pub fn finish(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

/// A stage's cache key, built in the one order every stage uses: the keys of the stages it
/// reads, its tables' schema version, the spray version, its settings (as JSON), then what
/// else it reads (the relevance stage: the class and sample lists).
pub struct StageKey(Fingerprint);

impl StageKey {
    /// Start a key from the upstream keys (in pipeline order) and, for a stage whose tables
    /// have a schema version, `(stage name, version)`.
    pub fn new(upstream: &[&str], schema: Option<(&str, u32)>) -> Self {
        let mut f = Fingerprint::new();
        for key in upstream {
            f = f.bytes(key);
        }
        if let Some((stage, version)) = schema {
            f = f.bytes(format!("{stage}-schema-{version}"));
        }
        StageKey(f.spray_version())
    }

    /// One settings value, by its JSON form.
    pub fn settings<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        StageKey(self.0.json(value))
    }

    /// Other inputs, as raw bytes.
    pub fn data(self, bytes: impl AsRef<[u8]>) -> Self {
        StageKey(self.0.bytes(bytes))
    }

    /// Lower-case hex digest.
    pub fn finish(self) -> String {
        self.0.finish()
    }
}

/// The SHA-256 of a file's bytes, as lower-case hex.
pub fn file_digest(path: &Path) -> Result<String> {
    // Streamed: a model's file is hundreds of MB, and holding it to hash it raised the peak
    // memory of a process that is about to load it again.
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| io_err(path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_is_sha256_of_the_concatenation() {
        let built = Fingerprint::new().bytes("ab").json(&[1, 2]).finish();
        let direct = format!("{:x}", Sha256::digest(b"ab[1,2]"));
        assert_eq!(built, direct);
        assert_ne!(built, Fingerprint::new().json(&[1, 2]).bytes("ab").finish());
    }

    #[test]
    fn a_stage_key_is_upstream_schema_version_settings_data() {
        let key = StageKey::new(&["up1", "up2"], Some(("analysis", 4)))
            .settings(&[1])
            .data("x")
            .finish();
        let direct = Fingerprint::new()
            .bytes("up1up2analysis-schema-4")
            .spray_version()
            .bytes("[1]x")
            .finish();
        assert_eq!(key, direct);
        let no_schema = StageKey::new(&["up1"], None).finish();
        assert_eq!(
            no_schema,
            Fingerprint::new().bytes("up1").spray_version().finish()
        );
    }
}

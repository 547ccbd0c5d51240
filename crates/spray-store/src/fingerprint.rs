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

/// The SHA-256 of a file's bytes, as lower-case hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
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
}

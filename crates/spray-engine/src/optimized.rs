//! ONNX Runtime's optimised graph of a compiled LRP model, kept on disk: a later process loads
//! it instead of optimising and prepacking again (#29, "start-up paid once").
//!
//! Why: creating a session of vgg16's compiled ε-z⁺-♭ graph spends ~4 s in ONNX Runtime
//! (graph rewrites into its blocked layout, the fully connected layers' weights packed for its
//! GEMM), every process and every Slurm shard. The optimised graph is written once, its weights
//! — the packed copies too (`session.save_external_prepacked_constant_initializers`) — in a
//! data file beside it, and later sessions load it with optimisation off: the same kernels on
//! the same packed weights, so the relevance is bit for bit the one of an optimising session.
//!
//! `<folder>/ort-<key>/`: `model.onnx`, `model.data`, and `entry.json` (the full key and the
//! model's signature), written last into a staging folder that is renamed into place, so an
//! entry is complete or absent. The key chains the caller's model key (what the compiled
//! graph is made from) with what the optimised graph depends on beyond it: ONNX Runtime's
//! build and the CPU (the blocked layout's width and the packed weights' format follow its
//! vector extensions). The cache only ever saves time: an entry that cannot be written or
//! read is reported and the session made as without it. CPU only: a CUDA session is made as
//! before.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ort::session::builder::SessionBuilder;
use ort::session::{builder::GraphOptimizationLevel, Session};
use sha2::{Digest, Sha256};
use spray_lrp::LrpSignature;

use crate::{session_builder, Device, EngineError, Result, SessionConfig};

/// Bumped when what an entry holds changes.
const FORMAT: &str = "spray-ort-optimized-1";
const MODEL: &str = "model.onnx";
const DATA: &str = "model.data";
/// Written last: an entry without it is not complete.
const ENTRY: &str = "entry.json";
/// A staging folder this old was left by a killed process (writing vgg16's takes seconds).
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Where ONNX Runtime's optimised graph of one compiled model is kept.
#[derive(Debug, Clone)]
pub struct OptimizedCache {
    folder: PathBuf,
    model_key: String,
    /// Remove other models' entries when this one is written ([`OptimizedCache::sole`]).
    sole: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    key: String,
    model_key: String,
    signature: LrpSignature,
}

/// What a session is made from on a cache miss.
pub(crate) enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl OptimizedCache {
    /// The cache in `folder` of the compiled model `model_key` names: a digest of everything
    /// the compiled graph is made from (the ONNX file's bytes, the composite and its options,
    /// the compiler's revision).
    pub fn new(folder: impl Into<PathBuf>, model_key: &str) -> Self {
        OptimizedCache {
            folder: folder.into(),
            model_key: model_key.to_owned(),
            sole: false,
        }
    }

    /// A cache whose folder holds one model: writing its entry removes other models' (a
    /// pipeline's output folder, as its compiled-model cache). Entries of the same model for
    /// another CPU or ONNX Runtime stay (Slurm shards on mixed nodes share an output folder).
    pub fn sole(folder: impl Into<PathBuf>, model_key: &str) -> Self {
        OptimizedCache {
            sole: true,
            ..OptimizedCache::new(folder, model_key)
        }
    }

    /// The entry's key: the model key, ONNX Runtime's build and the CPU. Read once the
    /// library is loaded (`session_builder` loads it).
    fn key(&self) -> String {
        let mut h = Sha256::new();
        for part in [FORMAT, &self.model_key, ort::info(), &cpu_description()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.folder.join(format!("ort-{}", &key[..16]))
    }

    /// The session of a complete entry and the model's signature; `None` where there is none
    /// (or a damaged one, reported and removed). Optimisation off: the graph is ONNX Runtime's
    /// own output for this build and CPU.
    pub(crate) fn load(&self, config: SessionConfig) -> Result<Option<(Session, LrpSignature)>> {
        if config.device != Device::Cpu {
            return Ok(None);
        }
        let builder = session_builder(config)?;
        let key = self.key();
        let dir = self.entry_dir(&key);
        let Ok(text) = std::fs::read_to_string(dir.join(ENTRY)) else {
            return Ok(None);
        };
        let entry: Entry = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => {
                discard(&dir, &format!("{}: {e}", dir.join(ENTRY).display()));
                return Ok(None);
            }
        };
        if entry.key != key {
            return Ok(None);
        }
        let loaded = builder
            .with_optimization_level(GraphOptimizationLevel::Disable)
            .map_err(EngineError::from)
            .and_then(|mut b| b.commit_from_file(dir.join(MODEL)).map_err(Into::into));
        match loaded {
            Ok(session) => {
                tracing::debug!(
                    "ONNX Runtime's optimised graph loaded from {}",
                    dir.display()
                );
                Ok(Some((session, entry.signature)))
            }
            Err(e) => {
                discard(&dir, &e.to_string());
                Ok(None)
            }
        }
    }

    /// A session of `source` that also writes its optimised graph into the cache. Where the
    /// cache cannot be written, the reason is reported and the session made as without it.
    pub(crate) fn store(
        &self,
        source: Source<'_>,
        signature: &LrpSignature,
        config: SessionConfig,
    ) -> Result<Session> {
        if config.device != Device::Cpu {
            return commit(session_builder(config)?, source);
        }
        let builder = session_builder(config)?;
        let key = self.key();
        match self.write(builder, source_again(&source), signature, &key) {
            Ok(session) => Ok(session),
            Err(e) => {
                tracing::warn!(
                    "cannot keep ONNX Runtime's optimised graph in {}: {e}",
                    self.folder.display()
                );
                commit(session_builder(config)?, source)
            }
        }
    }

    fn write(
        &self,
        builder: SessionBuilder,
        source: Source<'_>,
        signature: &LrpSignature,
        key: &str,
    ) -> Result<Session> {
        let io = |what: &str, e: std::io::Error| EngineError::Runtime(format!("{what}: {e}"));
        std::fs::create_dir_all(&self.folder).map_err(|e| io("creating the folder", e))?;
        sweep_stale_staging(&self.folder);
        let staging = tempfile::Builder::new()
            .prefix(&staging_prefix())
            .tempdir_in(&self.folder)
            .map_err(|e| io("creating a staging folder", e))?;
        let builder = builder
            .with_optimized_model_path(staging.path().join(MODEL))?
            .with_config_entry(
                "session.optimized_model_external_initializers_file_name",
                DATA,
            )?
            .with_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "1024",
            )?
            .with_config_entry("session.save_external_prepacked_constant_initializers", "1")?;
        let session = commit(builder, source)?;
        let entry = Entry {
            key: key.to_owned(),
            model_key: self.model_key.clone(),
            signature: signature.clone(),
        };
        let text = serde_json::to_string(&entry)
            .map_err(|e| EngineError::Runtime(format!("encoding {ENTRY}: {e}")))?;
        // The graph and its data on disk before the entry that says they are complete.
        for file in [MODEL, DATA] {
            let path = staging.path().join(file);
            if path.exists() {
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io(file, e))?;
            }
        }
        std::fs::write(staging.path().join(ENTRY), text).map_err(|e| io(ENTRY, e))?;
        // A complete entry already there (another process's, written meanwhile) stays: the
        // rename onto a non-empty folder fails, and the staging folder is dropped.
        let dir = self.entry_dir(key);
        match std::fs::rename(staging.path(), &dir) {
            Ok(()) => {
                // Renamed: the staging folder is gone, nothing for TempDir to remove.
                let _ = staging.keep();
                if self.sole {
                    self.remove_other_models(&dir);
                }
                tracing::debug!("ONNX Runtime's optimised graph kept in {}", dir.display());
            }
            Err(e) => tracing::debug!("not replacing {}: {e}", dir.display()),
        }
        Ok(session)
    }

    /// Entries of other models in the folder (a changed model or composite).
    fn remove_other_models(&self, keep: &Path) {
        let Ok(read) = std::fs::read_dir(&self.folder) else {
            return;
        };
        for dir in read.flatten().map(|e| e.path()) {
            let is_entry = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ort-"));
            if !is_entry || dir == keep {
                continue;
            }
            let model_key = std::fs::read_to_string(dir.join(ENTRY))
                .ok()
                .and_then(|t| serde_json::from_str::<Entry>(&t).ok())
                .map(|e| e.model_key);
            if model_key.as_deref() != Some(self.model_key.as_str()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

/// A second handle on the same source (the fallback after a failed write).
fn source_again<'a>(source: &Source<'a>) -> Source<'a> {
    match source {
        Source::Bytes(b) => Source::Bytes(b),
        Source::File(p) => Source::File(p),
    }
}

pub(crate) fn commit(mut builder: SessionBuilder, source: Source<'_>) -> Result<Session> {
    Ok(match source {
        Source::Bytes(bytes) => builder.commit_from_memory(bytes)?,
        Source::File(path) => builder.commit_from_file(path)?,
    })
}

/// Remove a damaged entry, saying why.
fn discard(dir: &Path, why: &str) {
    tracing::warn!(
        "ignoring ONNX Runtime's optimised graph in {}: {why}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The staging folder name's start for this process: `.ort-staging-<host>-<pid>-`.
fn staging_prefix() -> String {
    format!(".ort-staging-{}-{}-", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('-', "_"))
        .unwrap_or_default()
}

/// Staging folders a killed process left: one of this host whose process is gone (Linux), or
/// any older than [`STALE_STAGING`] (a live one is seconds old; another host's process cannot
/// be asked). Why: vgg16's is 1.7 GB, and a run killed while writing it would otherwise
/// leave it until a later write in the same folder an hour on.
fn sweep_stale_staging(folder: &Path) {
    let Ok(read) = std::fs::read_dir(folder) else {
        return;
    };
    let host = host_name();
    let now = SystemTime::now();
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_prefix(".ort-staging-") else {
            continue;
        };
        let mut parts = owner.splitn(3, '-');
        let gone = match (
            parts.next(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
        ) {
            (Some(h), Some(pid)) if h == host && Path::new("/proc/self").exists() => {
                !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_STAGING);
        if gone || old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The CPU as ONNX Runtime's kernels see it: its architecture and, on Linux, its model and
/// feature flags (the first processor's; the nodes of a Slurm partition share them).
fn cpu_description() -> String {
    let mut out = std::env::consts::ARCH.to_owned();
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut seen = std::collections::HashSet::new();
        for line in info.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let wanted = matches!(name, "model name" | "flags" | "Features" | "CPU part");
            if wanted && seen.insert(name.to_owned()) {
                out.push('|');
                out.push_str(value.trim());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_staging_folder_is_swept_and_a_live_ones_kept() {
        let folder = tempfile::tempdir().unwrap();
        let live = folder.path().join(format!("{}abc", staging_prefix()));
        // A pid above the kernel's limit (2^22) is no running process.
        let dead = folder
            .path()
            .join(format!(".ort-staging-{}-{}-abc", host_name(), 1u32 << 23));
        let other_host = folder.path().join(".ort-staging-elsewhere-1-abc");
        let entry = folder.path().join("ort-0123456789abcdef");
        for dir in [&live, &dead, &other_host, &entry] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep_stale_staging(folder.path());
        assert!(live.exists() && other_host.exists() && entry.exists());
        assert_eq!(dead.exists(), !Path::new("/proc/self").exists());
    }

    #[test]
    fn the_cpu_description_names_the_architecture_and_is_stable() {
        let a = cpu_description();
        assert!(a.starts_with(std::env::consts::ARCH));
        assert_eq!(a, cpu_description());
    }
}

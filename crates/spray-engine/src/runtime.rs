//! Finding and loading the ONNX Runtime shared library.
//!
//! spray uses `ort` with `load-dynamic`: the library is the one shipped in the `onnxruntime`
//! (CPU) or `onnxruntime-gpu` (CUDA) wheel on PyPI, fetched by `scripts/fetch-onnxruntime.sh`
//! into `.ort/` at the repository root. It is found without the user exporting anything:
//! `ORT_DYLIB_PATH` (a file) or `SPRAY_ORT_DIR` (a folder) win when set; otherwise `.ort/` is
//! looked for next to and above the executable, above the working directory, and in the
//! source tree spray was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::EngineError;

/// The ONNX Runtime release that `ort` 2.0.0-rc.15 (API 31) is built against.
pub const ORT_VERSION: &str = "1.31.1";

/// Where computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        device_id: i32,
    },
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda { device_id: 0 }),
            other => match other.strip_prefix("cuda:") {
                Some(id) => id
                    .parse()
                    .map(|device_id| Device::Cuda { device_id })
                    .map_err(|_| format!("bad CUDA device id in '{other}'")),
                None => Err(format!(
                    "unknown device '{other}' (expected cpu, cuda or cuda:N)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

fn flavour_dir(flavour: &str) -> String {
    format!("onnxruntime-{ORT_VERSION}-{flavour}")
}

fn library_name() -> String {
    format!("libonnxruntime.so.{ORT_VERSION}")
}

/// Candidate `.ort` folders, most specific first.
fn search_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(|p| p.join(".ort")));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(|p| p.join(".ort")));
    }
    // The workspace this binary was built from (crates/spray-engine/../../.ort).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(workspace) = manifest.ancestors().nth(2) {
        roots.push(workspace.join(".ort"));
    }
    roots
}

/// Locate the ONNX Runtime library for `device`. CUDA needs the GPU build; the CPU device
/// prefers the CPU build and accepts the GPU one (it runs CPU too).
pub fn locate_onnxruntime(device: Device) -> Result<PathBuf, EngineError> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EngineError::Runtime(format!(
                "ORT_DYLIB_PATH points to {}, which does not exist",
                path.display()
            )))
        };
    }
    let flavours: &[&str] = match device {
        Device::Cpu => &["cpu", "gpu"],
        Device::Cuda { .. } => &["gpu"],
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("SPRAY_ORT_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    for root in search_roots() {
        for f in flavours {
            dirs.push(root.join(flavour_dir(f)));
        }
    }
    for dir in &dirs {
        let candidate = dir.join(library_name());
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let fetch = match device {
        Device::Cpu => "scripts/fetch-onnxruntime.sh",
        Device::Cuda { .. } => "scripts/fetch-onnxruntime.sh gpu",
    };
    Err(EngineError::Runtime(format!(
        "ONNX Runtime {ORT_VERSION} ({}) not found; run `{fetch}` in the spray repository \
         (or set ORT_DYLIB_PATH to a libonnxruntime.so.{ORT_VERSION})",
        if matches!(device, Device::Cuda { .. }) {
            "GPU build"
        } else {
            "CPU build"
        }
    )))
}

static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, PathBuf), String>> =
    OnceLock::new();

/// Load ONNX Runtime once per process. The first device asked for decides which build is
/// loaded (a process cannot swap the library afterwards).
pub fn environment(device: Device) -> Result<ort::environment::Environment, EngineError> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = locate_onnxruntime(device).map_err(|e| e.to_string())?;
        let builder =
            ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let env = builder
            .with_name("spray")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
        tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
        Ok((env, path))
    });
    match loaded {
        Ok((env, _)) => Ok(env.clone()),
        Err(e) => Err(EngineError::Runtime(e.clone())),
    }
}

/// Path of the loaded library, once [`environment`] succeeded.
pub fn loaded_library() -> Option<PathBuf> {
    ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|(_, p)| p.clone())
}

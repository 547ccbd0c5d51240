//! The operations behind `spray explain`, `spray lrp compile` and `spray run`, on values rather
//! than files. The binary calls them on what it read from disk; the Python module
//! (`crates/spray-py`) calls them on NumPy arrays. Why one place: both must give the same
//! numbers for the same input and say the same thing when something is wrong (its errors go
//! through [`crate::errors::chain_text`] in both).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{Array2, ArrayD, ArrayViewD};
use spray_engine::{
    Device, LrpEngine, NonFinite, OptimizedCache, OrtConstantEvaluator, SessionConfig,
};
use spray_lrp::{compile_owned, CompileOptions, CompositeSpec};
use spray_pipeline::{Pipeline, RunOptions, RunSummary};

/// Which rules to use: a composite (built-in or a TOML file) and what it may need.
#[derive(Debug, Clone)]
pub struct Rules {
    pub composite: CompositeSpec,
    /// z-box bounds for epsilon-gamma-box: one value or one per channel.
    pub zbox_low: Option<Vec<f32>>,
    pub zbox_high: Option<Vec<f32>>,
    /// Name of the image input when the model has several inputs.
    pub input_name: Option<String>,
}

impl Rules {
    /// Compiler options; `device` is where the compiled model will run (it decides which ONNX
    /// Runtime build the constant folder loads).
    pub fn options(&self, device: Device) -> Result<CompileOptions> {
        if self.composite.needs_input_bounds()
            && (self.zbox_low.is_none() || self.zbox_high.is_none())
        {
            tracing::warn!(
                "epsilon-gamma-box without --zbox-low/--zbox-high: assuming inputs in [0, 1]"
            );
        }
        Ok(CompileOptions::for_spec(
            &self.composite,
            self.zbox_low.as_deref(),
            self.zbox_high.as_deref(),
            self.input_name.clone(),
        )?
        .with_constant_evaluator(Arc::new(OrtConstantEvaluator::new(device))))
    }
}

/// How an explanation runs.
#[derive(Debug, Clone, Copy)]
pub struct Execution {
    pub batch_size: usize,
    pub device: Device,
    /// Intra-op threads (0: one per core).
    pub threads: usize,
}

/// What [`explain`] gives back.
pub struct Explained {
    /// Shaped like the input.
    pub relevance: ArrayD<f32>,
    /// (N, K).
    pub logits: Array2<f32>,
    /// The composite's name.
    pub composite: String,
    /// Time spent explaining (not compiling or starting ONNX Runtime).
    pub seconds: f64,
    /// Per sample, whether its relevance or logits hold NaN or infinite values.
    pub non_finite: Vec<Option<NonFinite>>,
}

impl Explained {
    /// The error a caller reports when any sample's output is not finite: the output exists
    /// (to inspect) but is no usable explanation.
    pub fn non_finite_error(&self) -> Option<anyhow::Error> {
        let n = self.non_finite.len();
        let bad = self.non_finite.iter().filter(|f| f.is_some()).count();
        (bad > 0).then(|| {
            anyhow::anyhow!(
                "the output holds NaN or infinite values for {bad} of {n} sample(s); the files \
                 were written for inspection but are not a usable explanation"
            )
        })
    }
}

/// Reads an ONNX model.
pub fn load(path: &Path) -> Result<spray_onnx::ModelProto> {
    spray_onnx::load_model(path).with_context(|| format!("loading {}", path.display()))
}

/// Compiles the model at `model` and starts ONNX Runtime on it. An unsupported model is
/// refused here, before any input is looked at. With `cache`, a folder: ONNX Runtime's
/// optimised graph of this model under these rules is loaded from it where an earlier call
/// kept it there (neither compiling nor optimising again), else kept there on the way.
pub fn engine(
    model: &Path,
    rules: &Rules,
    execution: Execution,
    cache: Option<&Path>,
) -> Result<(LrpEngine, String)> {
    let options = rules.options(execution.device)?;
    let config = SessionConfig {
        device: execution.device,
        threads: execution.threads,
    };
    let cache = match cache {
        Some(folder) => Some(OptimizedCache::new(folder, &model_key(model, rules)?)),
        None => None,
    };
    if let Some(cache) = &cache {
        if let Some(engine) =
            LrpEngine::from_cache(cache, config).context("starting ONNX Runtime")?
        {
            return Ok((engine, options.composite.name.clone()));
        }
    }
    // The original graph is rewritten in place, and the compiled one handed to ORT below.
    let compiled = compile_owned(load(model)?, &options)
        .with_context(|| format!("compiling {}", model.display()))?;
    let engine = LrpEngine::from_model_cached(compiled, config, cache.as_ref())
        .context("starting ONNX Runtime")?;
    Ok((engine, options.composite.name.clone()))
}

/// What the compiled graph of `model` under `rules` is made from: the ONNX file's bytes, the
/// composite (its file's contents when it is a file), the z-box bounds, the input name and the
/// compiler's revision.
fn model_key(model: &Path, rules: &Rules) -> Result<String> {
    let mut key = spray_store::Fingerprint::new()
        .bytes(spray_lrp::COMPILER_REVISION)
        .bytes(spray_store::file_digest(model)?)
        .bytes(rules.composite.to_string())
        .json(&(&rules.zbox_low, &rules.zbox_high, &rules.input_name));
    if let Some(file) = rules.composite.file() {
        key = key.bytes(spray_store::file_digest(file)?);
    }
    Ok(key.finish())
}

/// LRP relevance of `input` (N, C, H, W) for `targets` (one per sample; negative: the
/// predicted class) with an engine from [`engine`].
pub fn explain(
    engine: &mut LrpEngine,
    composite: String,
    input: ArrayViewD<'_, f32>,
    targets: &[i64],
    batch_size: usize,
) -> Result<Explained> {
    if input.ndim() < 2 {
        bail!(
            "the input has shape {:?}; expected (N, C, H, W)",
            input.shape()
        );
    }
    if targets.len() != input.shape()[0] {
        bail!(
            "{} target(s) for {} sample(s)",
            targets.len(),
            input.shape()[0]
        );
    }
    let started = Instant::now();
    let out = engine
        .explain_batched(input, targets, batch_size)
        .context("running the LRP model")?;
    let seconds = started.elapsed().as_secs_f64();
    let non_finite = out.non_finite();
    Ok(Explained {
        relevance: out.relevance,
        logits: out.logits,
        composite,
        seconds,
        non_finite,
    })
}

/// The signature of a written LRP model.
pub struct CompiledFile {
    pub input: String,
    pub target: String,
    pub logits: String,
    pub relevance: String,
}

/// Compiles `model` under `rules` and writes the LRP model (outputs: logits, relevance).
pub fn compile(model: &Path, rules: &Rules, out: &Path) -> Result<CompiledFile> {
    let options = rules.options(Device::Cpu)?;
    let compiled = compile_owned(load(model)?, &options)
        .with_context(|| format!("compiling {}", model.display()))?;
    spray_onnx::save_model(&compiled.model, out)?;
    let sig = compiled.signature;
    Ok(CompiledFile {
        input: sig.input,
        target: sig.target,
        logits: sig.logits,
        relevance: sig.relevance,
    })
}

/// Runs the pipeline file at `path` (cached and resumable, as `spray run`).
pub fn run(path: &Path, options: &RunOptions) -> Result<(Pipeline, RunSummary)> {
    let pipeline =
        Pipeline::load(path).with_context(|| format!("reading pipeline {}", path.display()))?;
    let summary = spray_pipeline::run(&pipeline, options)
        .with_context(|| format!("running {}", path.display()))?;
    Ok((pipeline, summary))
}

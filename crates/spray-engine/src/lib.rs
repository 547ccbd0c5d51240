//! Running models with ONNX Runtime: plain inference and compiled LRP models, batched, on CPU
//! or CUDA.

mod compiled;
mod constants;
mod external;
mod finite;
mod optimized;
mod runtime;
mod steered;

use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use ort::ep::ExecutionProvider;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

pub use compiled::{CompiledModel, LoadModel};
pub use constants::OrtConstantEvaluator;
pub use finite::{check_sample, NonFinite};
pub use optimized::OptimizedCache;
pub use runtime::{environment, loaded_library, locate_onnxruntime, Device, ORT_VERSION};
use spray_lrp::LrpSignature;
pub use steered::{Steered, SteeredPredictor};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Runtime(String),
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("{0}")]
    Input(String),
}

impl<R> From<ort::Error<R>> for EngineError {
    fn from(e: ort::Error<R>) -> Self {
        EngineError::Ort(clean_ort_message(e.message()))
    }
}

/// ONNX Runtime prefixes its messages with the C++ source location and function signature
/// (`/onnxruntime_src/…/model.cc:256 onnxruntime::Model::Model(…) Unsupported model IR…`):
/// keep only what a user can act on.
pub fn clean_ort_message(message: &str) -> String {
    let mut out = message.trim().to_owned();
    while let Some(start) = out.find("/onnxruntime_src/") {
        // The location runs to `:<line> `; the signature after it to its closing parenthesis.
        let rest = &out[start..];
        let Some(colon) = rest.find(' ') else {
            break;
        };
        let mut end = start + colon + 1;
        let mut depth = 0i32;
        let mut seen_paren = false;
        for (i, c) in out[end..].char_indices() {
            match c {
                '(' => {
                    depth += 1;
                    seen_paren = true;
                }
                ')' => depth -= 1,
                ' ' if seen_paren && depth == 0 => {
                    end += i + 1;
                    break;
                }
                _ => {}
            }
        }
        if !seen_paren || end <= start + colon + 1 {
            break;
        }
        out.replace_range(start..end, "");
    }
    out
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub device: Device,
    /// Intra-op threads; 0 lets ONNX Runtime decide (one per core).
    pub threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            device: Device::Cpu,
            threads: 0,
        }
    }
}

/// Create a session from model bytes on the configured device. Asking for CUDA where the GPU
/// build or a GPU is missing is an error that says which.
pub fn session_from_bytes(bytes: &[u8], config: SessionConfig) -> Result<Session> {
    Ok(session_builder(config)?.commit_from_memory(bytes)?)
}

/// A session of a model file (with its external data beside it).
pub fn session_from_file(path: &std::path::Path, config: SessionConfig) -> Result<Session> {
    Ok(session_builder(config)?.commit_from_file(path)?)
}

/// A model as ONNX Runtime reads it: its bytes, or, over ONNX Runtime's 2 GB protobuf limit,
/// a temporary copy with external data (kept as long as this value).
enum Prepared {
    Bytes(Vec<u8>),
    External(external::ExternalModel),
}

impl Prepared {
    fn of(model: &spray_onnx::ModelProto) -> Result<Self> {
        Ok(
            if spray_onnx::encoded_len(model) <= external::PROTOBUF_LIMIT {
                Prepared::Bytes(spray_onnx::encode_model(model))
            } else {
                Prepared::External(external::write_external(model)?)
            },
        )
    }

    /// Its session; ONNX Runtime's optimised graph kept in `cache` on the way.
    fn session(
        &self,
        config: SessionConfig,
        cache: Option<&OptimizedCache>,
        signature: &LrpSignature,
    ) -> Result<Session> {
        let source = match self {
            Prepared::Bytes(bytes) => optimized::Source::Bytes(bytes),
            Prepared::External(written) => optimized::Source::File(&written.path),
        };
        match cache {
            Some(cache) => cache.store(source, signature, config),
            None => optimized::commit(session_builder(config)?, source),
        }
    }

    /// The external-data copy, which must outlive the session.
    fn into_external(self) -> Option<external::ExternalModel> {
        match self {
            Prepared::Bytes(_) => None,
            Prepared::External(written) => Some(written),
        }
    }
}

fn session_builder(config: SessionConfig) -> Result<ort::session::builder::SessionBuilder> {
    let env = environment(config.device)?;
    let mut builder =
        Session::builder(&env)?.with_optimization_level(GraphOptimizationLevel::Level3)?;
    if config.threads > 0 {
        builder = builder.with_intra_threads(config.threads)?;
    }
    if config.device == Device::Cpu {
        // ONNX Runtime's memory pattern (one block per input shape, planned from the first
        // run's allocations) held ~1 GB more at its peak than allocating each tensor from the
        // arena as it comes: vgg16 ε-αβ-♭, batch 8, 3.9 → 2.8 GB; resnet50 2.7 → 1.7 GB — at the
        // same speed and with the same bits (benches/RESULTS.md). An LRP graph keeps every
        // layer's activations alive until its backward step, which the plan lays out side by side.
        builder = builder.with_memory_pattern(false)?;
    }
    if let Device::Cuda { device_id } = config.device {
        let cuda = ort::ep::CUDA::default().with_device_id(device_id);
        if !ort::ep::CUDA::is_available().unwrap_or(false) {
            return Err(EngineError::Runtime(format!(
                "the loaded ONNX Runtime ({}) has no CUDA execution provider; run \
                 `scripts/fetch-onnxruntime.sh gpu` for the onnxruntime-gpu build",
                loaded_library()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        cuda.register(&mut builder).map_err(|e| {
            EngineError::Runtime(format!(
                "cannot use CUDA device {device_id}: {} (is a GPU present, with the CUDA 13 and cuDNN 9 libraries \
                 on the library path?)",
                e.message()
            ))
        })?;
    }
    Ok(builder)
}

/// The result of explaining a batch.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// [N, K] pre-softmax logits.
    pub logits: Array2<f32>,
    /// Relevance, shaped like the input.
    pub relevance: ArrayD<f32>,
    /// The class explained for each sample (the argmax where the target was negative).
    pub targets: Array1<i64>,
    /// [N, C] relevance per channel of the concept layer, when the model has that output.
    pub concept: Option<Array2<f32>>,
}

/// A compiled LRP model loaded into ONNX Runtime.
pub struct LrpEngine {
    session: Session,
    signature: LrpSignature,
    /// Set when a batch failed and single samples run: a graph exported with a fixed batch
    /// whose shapes (a transformer's class token, its attention reshapes) are baked for it.
    one_at_a_time: bool,
    /// The external-data copy a model over 2 GB was loaded from.
    _external: Option<external::ExternalModel>,
}

impl LrpEngine {
    pub fn new(model: &spray_lrp::LrpModel, config: SessionConfig) -> Result<Self> {
        Self::new_cached(model, config, None)
    }

    /// [`LrpEngine::new`], ONNX Runtime's optimised graph kept in `cache` on the way (a later
    /// process loads it with [`LrpEngine::from_cache`]).
    pub fn new_cached(
        model: &spray_lrp::LrpModel,
        config: SessionConfig,
        cache: Option<&OptimizedCache>,
    ) -> Result<Self> {
        let prepared = Prepared::of(&model.model)?;
        let session = prepared.session(config, cache, &model.signature)?;
        Ok(LrpEngine {
            session,
            signature: model.signature.clone(),
            one_at_a_time: false,
            _external: prepared.into_external(),
        })
    }

    /// The engine of the model `cache` holds ONNX Runtime's optimised graph of, without
    /// compiling it; `None` where it holds none (then compile, and make the engine with
    /// [`LrpEngine::from_model_cached`] or [`LrpEngine::new_cached`], which keep it).
    pub fn from_cache(cache: &OptimizedCache, config: SessionConfig) -> Result<Option<Self>> {
        Ok(cache.load(config)?.map(|(session, signature)| LrpEngine {
            session,
            signature,
            one_at_a_time: false,
            _external: None,
        }))
    }

    /// The engine of a model the caller no longer needs: its graph is encoded and dropped
    /// before ONNX Runtime makes its own copy, so the process never holds three (the graph,
    /// its bytes, ORT's). Why it matters: vgg16's compiled graph is 1.1 GB.
    pub fn from_model(model: spray_lrp::LrpModel, config: SessionConfig) -> Result<Self> {
        Self::from_model_cached(model, config, None)
    }

    /// [`LrpEngine::from_model`], ONNX Runtime's optimised graph kept in `cache` on the way.
    pub fn from_model_cached(
        model: spray_lrp::LrpModel,
        config: SessionConfig,
        cache: Option<&OptimizedCache>,
    ) -> Result<Self> {
        let prepared = Prepared::of(&model.model)?;
        drop(model.model);
        let session = prepared.session(config, cache, &model.signature)?;
        Ok(LrpEngine {
            session,
            signature: model.signature,
            one_at_a_time: false,
            _external: prepared.into_external(),
        })
    }

    pub fn signature(&self) -> &LrpSignature {
        &self.signature
    }

    /// Explain one batch. `targets[i] < 0` explains the predicted class of sample i.
    ///
    /// A model exported with a fixed batch size has it freed by the compiler, but a graph may
    /// still compute shapes for that size in constants (torch folds a transformer's class-token
    /// `expand` and its attention reshapes): then a batch fails in ONNX Runtime while one
    /// sample runs. The engine then explains one sample at a time from there on, and says so
    /// once; if one sample fails too, the error names the likely cause.
    pub fn explain(&mut self, input: ArrayViewD<'_, f32>, targets: &[i64]) -> Result<Explanation> {
        let n = input.shape().first().copied().unwrap_or(0);
        if n > 1 && self.one_at_a_time {
            return self.explain_batched(input, targets, 1);
        }
        match self.run_batch(input.view(), targets) {
            Err(e) if self.signature.batch_relaxed && n > 1 => {
                let single = input.slice_axis(Axis(0), (0..1).into());
                match self.run_batch(single, &targets[..1]) {
                    Ok(_) => {
                        tracing::warn!(
                            "the model was exported with a fixed batch size and computes shapes \
                             for it; explaining one image at a time (export with a dynamic batch \
                             axis, e.g. torch.onnx.export(..., dynamic_axes={{'input': {{0: 'N'}}}}), \
                             to batch)"
                        );
                        self.one_at_a_time = true;
                        self.explain_batched(input, targets, 1)
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) if self.signature.batch_relaxed => Err(EngineError::Ort(format!(
                "{e} (the model was exported with a fixed batch size; if its graph computes                  shapes for that size, export it with a dynamic batch axis)"
            ))),
            other => other,
        }
    }

    fn run_batch(&mut self, input: ArrayViewD<'_, f32>, targets: &[i64]) -> Result<Explanation> {
        let n = input.shape().first().copied().unwrap_or(0);
        if targets.len() != n {
            return Err(EngineError::Input(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            )));
        }
        check_input_shape(&self.signature.input_shape, input.shape())?;
        let input = input.as_standard_layout();
        let target_array = ndarray::ArrayView1::from(targets);
        let outputs = self.session.run(ort::inputs![
            self.signature.input.as_str() => TensorRef::from_array_view(input.view())?,
            self.signature.target.as_str() => TensorRef::from_array_view(target_array)?,
        ])?;
        let logits = outputs[self.signature.logits.as_str()]
            .try_extract_array::<f32>()?
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| EngineError::Ort(format!("logits: {e}")))?
            .to_owned();
        if logits.ncols() < 2 {
            return Err(EngineError::Input(format!(
                "the model returned {} logit(s) per sample; spray explains classifiers with an \
                 [N, classes] output and at least 2 classes",
                logits.ncols()
            )));
        }
        let relevance = outputs[self.signature.relevance.as_str()]
            .try_extract_array::<f32>()?
            .to_owned();
        let concept = match &self.signature.concept {
            Some(c) => Some(
                outputs[c.name.as_str()]
                    .try_extract_array::<f32>()?
                    .into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| EngineError::Ort(format!("concept relevance: {e}")))?
                    .to_owned(),
            ),
            None => None,
        };
        let chosen = resolve_targets(logits.view(), targets);
        Ok(Explanation {
            logits,
            relevance,
            targets: chosen,
            concept,
        })
    }

    /// Explain a whole array in batches of `batch_size`.
    pub fn explain_batched(
        &mut self,
        input: ArrayViewD<'_, f32>,
        targets: &[i64],
        batch_size: usize,
    ) -> Result<Explanation> {
        let n = input.shape().first().copied().unwrap_or(0);
        if targets.len() != n {
            return Err(EngineError::Input(format!(
                "{} targets for {n} samples",
                targets.len()
            )));
        }
        let batch_size = batch_size.max(1);
        let mut logits = Vec::new();
        let mut relevance = Vec::new();
        let mut chosen = Vec::new();
        let mut concept = Vec::new();
        for start in (0..n).step_by(batch_size) {
            let end = (start + batch_size).min(n);
            let part = self.explain(
                input.slice_axis(Axis(0), (start..end).into()),
                &targets[start..end],
            )?;
            logits.push(part.logits);
            relevance.push(part.relevance);
            chosen.extend(part.targets);
            concept.extend(part.concept);
        }
        let concept_views: Vec<_> = concept.iter().map(|a| a.view()).collect();
        let logits_views: Vec<_> = logits.iter().map(|a| a.view()).collect();
        let relevance_views: Vec<_> = relevance.iter().map(|a| a.view()).collect();
        Ok(Explanation {
            logits: if logits_views.is_empty() {
                Array2::zeros((0, 0))
            } else {
                ndarray::concatenate(Axis(0), &logits_views)
                    .map_err(|e| EngineError::Ort(e.to_string()))?
            },
            relevance: if relevance_views.is_empty() {
                ArrayD::zeros(IxDyn(input.shape()))
            } else {
                ndarray::concatenate(Axis(0), &relevance_views)
                    .map_err(|e| EngineError::Ort(e.to_string()))?
            },
            targets: Array1::from(chosen),
            concept: if concept_views.is_empty() {
                None
            } else {
                Some(
                    ndarray::concatenate(Axis(0), &concept_views)
                        .map_err(|e| EngineError::Ort(e.to_string()))?,
                )
            },
        })
    }
}

fn resolve_targets(logits: ArrayView2<'_, f32>, targets: &[i64]) -> Array1<i64> {
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t >= 0 {
                t
            } else {
                argmax(logits.slice(s![i, ..]).iter().copied()) as i64
            }
        })
        .collect()
}

/// Index of the largest value (first on ties), as ONNX ArgMax.
pub fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn check_input_shape(expected: &[Option<i64>], got: &[usize]) -> Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    let matches = expected.len() == got.len()
        && expected
            .iter()
            .zip(got)
            .skip(1)
            .all(|(e, g)| e.is_none_or(|e| e as usize == *g));
    if matches {
        Ok(())
    } else {
        let want: Vec<String> = expected
            .iter()
            .map(|d| d.map_or("?".into(), |v| v.to_string()))
            .collect();
        Err(EngineError::Input(format!(
            "the model expects input of shape [{}], got {:?}",
            want.join(", "),
            got
        )))
    }
}

/// Plain inference with an unmodified model (for comparison and benchmarks).
pub struct Predictor {
    session: Session,
    input: String,
    output: String,
}

impl Predictor {
    pub fn new(model_bytes: &[u8], config: SessionConfig) -> Result<Self> {
        Self::of_session(session_from_bytes(model_bytes, config)?)
    }

    /// [`Predictor::new`], ONNX Runtime's optimised graph kept in `cache` on the way (its entry
    /// records `signature`, the compiled model's this graph comes from).
    pub fn new_cached(
        model_bytes: &[u8],
        config: SessionConfig,
        cache: &OptimizedCache,
        signature: &LrpSignature,
    ) -> Result<Self> {
        Self::of_session(cache.store(optimized::Source::Bytes(model_bytes), signature, config)?)
    }

    /// The predictor of the graph `cache` holds; `None` where it holds none.
    pub fn from_cache(cache: &OptimizedCache, config: SessionConfig) -> Result<Option<Self>> {
        cache
            .load(config)?
            .map(|(session, _)| Self::of_session(session))
            .transpose()
    }

    fn of_session(session: Session) -> Result<Self> {
        let input = session
            .inputs()
            .first()
            .map(|i| i.name().to_owned())
            .ok_or_else(|| EngineError::Input("the model has no inputs".into()))?;
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_owned())
            .ok_or_else(|| EngineError::Input("the model has no outputs".into()))?;
        Ok(Predictor {
            session,
            input,
            output,
        })
    }

    pub fn predict(&mut self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        let input = input.as_standard_layout();
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => TensorRef::from_array_view(input.view())?])?;
        Ok(outputs[self.output.as_str()]
            .try_extract_array::<f32>()?
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_locations_are_dropped_from_ort_messages() {
        let raw = "/onnxruntime_src/onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model(onnx::ModelProto&&, \
                   const onnxruntime::PathString&, const onnxruntime::logging::Logger&) Unsupported model IR \
                   version: 14, max supported IR version: 13\n";
        assert_eq!(
            super::clean_ort_message(raw),
            "Unsupported model IR version: 14, max supported IR version: 13"
        );
        assert_eq!(super::clean_ort_message("plain message"), "plain message");
    }
}

//! The compiled LRP model, kept in the output folder between processes: a resumed run, each
//! Slurm shard and the verify stage after the relevance stage load it instead of compiling
//! again. Why: compiling rewrites every weight (vgg16's 528 MB become 1.1 GB of modified
//! copies) and costs several seconds per process — paid once per model, composite and spray
//! version, not once per process.
//!
//! `<out>/relevance/_lrp/<key>.onnx` (the compiled model) and `<key>.json` (its signature and
//! plan, written last: a model without its JSON is not complete). The key is the model's
//! fingerprint (the ONNX file's bytes, the composite and its options, the input name, the
//! compiler's revision) chained with the spray version; the folder holds one key, a new key
//! replaces the old files. Beside them, `ort-<key>/`: ONNX Runtime's optimised graph of the
//! same model ([`optimized_cache`], `spray_engine::OptimizedCache`), which spares the relevance
//! stage of each later process the optimisation and weight packing.

use std::path::{Path, PathBuf};

use spray_engine::{Device, OptimizedCache};
use spray_lrp::{LayerPlan, LrpModel, LrpSignature};
use spray_store::StageKey;

use crate::{stage_dir, Pipeline, PipelineError, Result, Stage};

/// What `<key>.json` holds beside the model.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    key: String,
    signature: LrpSignature,
    layers: Vec<LayerPlan>,
}

/// The cache key of the compiled model of a pipeline whose model fingerprint is `model`.
fn key(model_fingerprint: &str) -> String {
    StageKey::new(&[model_fingerprint], Some(("compiled-lrp", 1))).finish()
}

fn folder(pipeline: &Pipeline) -> PathBuf {
    stage_dir(pipeline, Stage::Relevance).join("_lrp")
}

fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let stem = &key[..key.len().min(16)];
    (
        dir.join(format!("{stem}.onnx")),
        dir.join(format!("{stem}.json")),
    )
}

/// The pipeline's compiled model: from the cache when it holds the key of `model_fingerprint`
/// (the run's `Fingerprints::model`), else compiled and stored. The cache only ever saves
/// time: a file that cannot be read or written is reported (`-v`) and the model compiled as
/// without it.
pub(crate) fn compiled_model(
    pipeline: &Pipeline,
    device: Device,
    model_fingerprint: &str,
) -> Result<LrpModel> {
    let key = &key(model_fingerprint);
    let dir = folder(pipeline);
    match read(&dir, key) {
        Ok(Some(model)) => return Ok(model),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "ignoring the cached compiled model in {}: {e}",
            dir.display()
        ),
    }
    let model = compile_model(pipeline, device)?;
    if let Err(e) = write(&dir, key, &model) {
        tracing::warn!("cannot keep the compiled model in {}: {e}", dir.display());
    }
    Ok(model)
}

/// Where ONNX Runtime's optimised graph of the pipeline's compiled model is kept: beside the
/// compiled model, under the same model fingerprint (`spray_engine::OptimizedCache`).
pub(crate) fn optimized_cache(pipeline: &Pipeline, model_fingerprint: &str) -> OptimizedCache {
    OptimizedCache::sole(folder(pipeline), model_fingerprint)
}

/// Where ONNX Runtime's optimised graph of the compiled model's forward half (the verify
/// stage's scorer) is kept: `_lrp/forward/`, a folder of its own (each folder keeps one model).
pub(crate) fn forward_cache(pipeline: &Pipeline, model_fingerprint: &str) -> OptimizedCache {
    OptimizedCache::sole(folder(pipeline).join("forward"), model_fingerprint)
}

/// Load the pipeline's model and compile it under its rules (an unsupported op or a broken
/// model is reported here, before any image is decoded).
fn compile_model(pipeline: &Pipeline, device: Device) -> Result<spray_lrp::LrpModel> {
    let fail = |message: String| PipelineError::Lrp {
        path: pipeline.model.path.display().to_string(),
        message,
    };
    let model = spray_onnx::load_model(&pipeline.model.path).map_err(|e| fail(e.to_string()))?;
    let options = pipeline
        .lrp
        .compile_options(&pipeline.model)?
        .with_constant_evaluator(std::sync::Arc::new(
            spray_engine::OrtConstantEvaluator::new(device),
        ));
    spray_lrp::compile_owned(model, &options).map_err(|e| fail(e.to_string()))
}

/// The signature of the pipeline's compiled model when the cache holds it, read from its JSON
/// alone (the graph stays on disk until a caller needs it). `None`: not cached, or unreadable.
pub(crate) fn cached_signature(
    pipeline: &Pipeline,
    model_fingerprint: &str,
) -> Option<LrpSignature> {
    read_signature(&folder(pipeline), &key(model_fingerprint))
}

fn read_signature(dir: &Path, key: &str) -> Option<LrpSignature> {
    let (onnx, json) = paths(dir, key);
    let sidecar: Sidecar = serde_json::from_str(&std::fs::read_to_string(json).ok()?).ok()?;
    (sidecar.key == key && onnx.is_file()).then_some(sidecar.signature)
}

/// The cached model under `key`, `None` when there is none (or one of another key).
fn read(dir: &Path, key: &str) -> std::result::Result<Option<LrpModel>, String> {
    let (onnx, json) = paths(dir, key);
    let Ok(text) = std::fs::read_to_string(&json) else {
        return Ok(None);
    };
    let sidecar: Sidecar =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    if sidecar.key != key {
        return Ok(None);
    }
    // Decoded as written, without load_model's checks: spray wrote it from a model that passed
    // them, and they would read every weight again.
    let bytes = std::fs::read(&onnx).map_err(|e| format!("{}: {e}", onnx.display()))?;
    let model = spray_onnx::decode_model(&bytes).map_err(|e| format!("{}: {e}", onnx.display()))?;
    Ok(Some(LrpModel {
        model,
        signature: sidecar.signature,
        layers: sidecar.layers,
    }))
}

/// Store `model` under `key` (the model first, its JSON last), and remove other keys' files.
fn write(dir: &Path, key: &str, model: &LrpModel) -> std::result::Result<(), String> {
    let (onnx, json) = paths(dir, key);
    let sidecar = Sidecar {
        key: key.to_owned(),
        signature: model.signature.clone(),
        layers: model.layers.clone(),
    };
    let text = serde_json::to_string(&sidecar).map_err(|e| e.to_string())?;
    spray_store::write_atomically(&onnx, &model.to_bytes()).map_err(|e| e.to_string())?;
    spray_store::write_atomically(&json, text.as_bytes()).map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path == onnx || path == json;
        let name = entry.file_name();
        // Another process's file being written keeps its leading dot until it is renamed.
        if !ours && !name.to_string_lossy().starts_with('.') {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_model_fingerprint() {
        assert_eq!(key("a"), key("a"));
        assert_ne!(key("a"), key("b"));
    }

    fn model(input: &str) -> LrpModel {
        LrpModel {
            model: spray_onnx::ModelProto {
                ir_version: 8,
                graph: Some(spray_onnx::GraphProto {
                    name: input.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            signature: LrpSignature {
                input: input.into(),
                target: "target".into(),
                logits: "logits".into(),
                relevance: "relevance".into(),
                input_shape: vec![None, Some(3), Some(8), Some(8)],
                batch_relaxed: false,
                concept: None,
            },
            layers: Vec::new(),
        }
    }

    #[test]
    fn a_stored_model_comes_back_under_its_key_only_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (key("a"), key("b"));
        assert!(read(dir.path(), &first).unwrap().is_none());
        write(dir.path(), &first, &model("x")).unwrap();
        let back = read(dir.path(), &first).unwrap().unwrap();
        assert_eq!(back.model, model("x").model);
        assert_eq!(back.signature, model("x").signature);
        assert!(read(dir.path(), &second).unwrap().is_none());
        // Its signature alone, without the graph; none under another key.
        assert_eq!(
            read_signature(dir.path(), &first),
            Some(model("x").signature)
        );
        assert_eq!(read_signature(dir.path(), &second), None);
        // A new key: its two files alone remain.
        write(dir.path(), &second, &model("y")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(read(dir.path(), &first).unwrap().is_none());
        assert_eq!(
            read(dir.path(), &second).unwrap().unwrap().signature.input,
            "y"
        );
        // A JSON whose model is missing gives no signature (the graph could not be loaded).
        let (onnx, json) = paths(dir.path(), &second);
        let kept = std::fs::read(&onnx).unwrap();
        std::fs::remove_file(&onnx).unwrap();
        assert_eq!(read_signature(dir.path(), &second), None);
        std::fs::write(&onnx, kept).unwrap();
        // A broken JSON is an error the caller reports and compiles past.
        std::fs::write(&json, "{").unwrap();
        assert!(read(dir.path(), &second).is_err());
        assert_eq!(read_signature(dir.path(), &second), None);
    }
}

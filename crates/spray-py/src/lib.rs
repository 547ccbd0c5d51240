//! `spray._spray`: the native half of the `spray` Python package (the rest, NumPy in and out
//! and the table readers, is `python/spray/__init__.py`).
//!
//! Arrays cross as little-endian float32 bytes plus a shape, so this crate needs no NumPy
//! binding; every operation is the one the `spray` binary runs ([`spray_cli::front`]) and every
//! error is raised as `spray.SprayError` with the text the binary prints after `error: `
//! ([`spray_cli::errors::chain_text`]). Work runs with the GIL released.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::json;
use spray_analyze::{AnalysisSettings, MapsInMemory};
use spray_cli::errors::chain_text;
use spray_cli::front::{self, Execution, Rules};
use spray_engine::Device;
use spray_lrp::CompositeSpec;
use spray_pipeline::{RunOptions, Stage};

create_exception!(
    _spray,
    SprayError,
    PyRuntimeError,
    "An error from spray, with the message the `spray` command prints."
);

fn raise(e: anyhow::Error) -> PyErr {
    SprayError::new_err(chain_text(&e))
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn to_bytes<'a>(values: impl IntoIterator<Item = &'a f32>) -> Vec<u8> {
    values.into_iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn rules(
    composite: &str,
    zbox_low: Option<Vec<f32>>,
    zbox_high: Option<Vec<f32>>,
    input_name: Option<String>,
) -> anyhow::Result<Rules> {
    let composite: CompositeSpec = composite.parse()?;
    Ok(Rules {
        composite,
        zbox_low,
        zbox_high,
        input_name,
    })
}

fn device(text: &str) -> anyhow::Result<Device> {
    text.parse().map_err(anyhow::Error::msg)
}

/// Relevance (bytes, shaped like the input) and logits (bytes, and their shape) of `data`
/// (float32, `shape` = (N, C, H, W)) for `targets` (one per sample; negative: predicted).
#[pyfunction]
#[pyo3(signature = (model, data, shape, targets, composite, zbox_low=None, zbox_high=None,
                    input_name=None, batch_size=16, device="cpu", threads=0, cache=None))]
#[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each
fn explain<'py>(
    py: Python<'py>,
    model: PathBuf,
    data: &[u8],
    shape: Vec<usize>,
    targets: Vec<i64>,
    composite: &str,
    zbox_low: Option<Vec<f32>>,
    zbox_high: Option<Vec<f32>>,
    input_name: Option<String>,
    batch_size: usize,
    device: &str,
    threads: usize,
    cache: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Vec<usize>)> {
    let rules = rules(composite, zbox_low, zbox_high, input_name).map_err(raise)?;
    let execution = Execution {
        batch_size,
        device: self::device(device).map_err(raise)?,
        threads,
    };
    let values = floats(data);
    let (relevance, logits, logits_shape) = py
        .allow_threads(|| -> anyhow::Result<_> {
            let input = ndarray::ArrayD::from_shape_vec(shape.clone(), values).map_err(|e| {
                anyhow::anyhow!("{} bytes do not fill the shape {shape:?}: {e}", data.len())
            })?;
            // Compile first: an unsupported model is refused before the input is looked at.
            let (mut engine, name) = front::engine(&model, &rules, execution, cache.as_deref())?;
            let out = front::explain(&mut engine, name, input.view(), &targets, batch_size)?;
            if let Some(e) = out.non_finite_error() {
                return Err(e);
            }
            let logits_shape = out.logits.shape().to_vec();
            Ok((
                to_bytes(&out.relevance),
                to_bytes(&out.logits),
                logits_shape,
            ))
        })
        .map_err(raise)?;
    Ok((
        PyBytes::new(py, &relevance),
        PyBytes::new(py, &logits),
        logits_shape,
    ))
}

/// Writes the LRP model of `model` to `out`; returns its input, target, logits and relevance
/// names.
#[pyfunction]
#[pyo3(signature = (model, out, composite, zbox_low=None, zbox_high=None, input_name=None))]
fn compile(
    py: Python<'_>,
    model: PathBuf,
    out: PathBuf,
    composite: &str,
    zbox_low: Option<Vec<f32>>,
    zbox_high: Option<Vec<f32>>,
    input_name: Option<String>,
) -> PyResult<(String, String, String, String)> {
    let rules = rules(composite, zbox_low, zbox_high, input_name).map_err(raise)?;
    py.allow_threads(|| front::compile(&model, &rules, &out))
        .map(|s| (s.input, s.target, s.logits, s.relevance))
        .map_err(raise)
}

/// Runs a pipeline file as `spray run` does; returns a JSON summary (the output folder, the
/// report, each stage's status, the ranking and the flagged classes).
#[pyfunction]
#[pyo3(signature = (pipeline, stage=None, force=Vec::new(), device=None))]
fn run(
    py: Python<'_>,
    pipeline: PathBuf,
    stage: Option<String>,
    force: Vec<String>,
    device: Option<String>,
) -> PyResult<String> {
    let parse_stage = |s: &str| {
        s.parse::<Stage>()
            .map_err(|e| SprayError::new_err(e.to_string()))
    };
    let options = RunOptions {
        stage: stage.as_deref().map(parse_stage).transpose()?,
        shard: None,
        force: force
            .iter()
            .map(|s| parse_stage(s))
            .collect::<PyResult<_>>()?,
        progress: false,
        device: device
            .as_deref()
            .map(self::device)
            .transpose()
            .map_err(raise)?,
    };
    let (pipeline, summary) = py
        .allow_threads(|| front::run(&pipeline, &options))
        .map_err(raise)?;
    let stages: Vec<_> = summary
        .stages
        .iter()
        .map(|s| {
            json!({
                "stage": s.stage.to_string(),
                "status": s.status.to_string(),
                "seconds": s.seconds,
                "detail": s.detail,
            })
        })
        .collect();
    let ranking: Vec<_> = summary
        .ranking
        .iter()
        .map(|(class, score, effect)| json!({"class": class, "score": score, "verified_effect": effect}))
        .collect();
    Ok(json!({
        "output_dir": pipeline.output_dir,
        "report": summary.report,
        "stages": stages,
        "ranking": ranking,
        "flagged": summary.flagged,
    })
    .to_string())
}

/// SpRAy per label on `n` maps of `h` × `w` (float32 bytes, channels summed), as the analyze
/// stage analyses the relevance space; `settings` is `[analysis]` as JSON. Returns JSON: per
/// label its spectrum and, per map, its cluster, t-SNE position and spectral coordinates.
#[pyfunction]
fn analyze(
    py: Python<'_>,
    data: &[u8],
    shape: (usize, usize, usize),
    labels: Vec<i32>,
    names: BTreeMap<i32, String>,
    settings: &str,
) -> PyResult<String> {
    let settings: AnalysisSettings = serde_json::from_str(settings)
        .map_err(|e| SprayError::new_err(format!("analysis settings: {e}")))?;
    let values = floats(data);
    let (n, h, w) = shape;
    let groups = py
        .allow_threads(|| {
            spray_analyze::analyze_maps(
                &MapsInMemory {
                    maps: &values,
                    n,
                    h,
                    w,
                    labels: &labels,
                    names: &names,
                },
                &settings,
            )
        })
        .map_err(|e| raise(e.into()))?;
    let out: Vec<_> = groups
        .iter()
        .map(|g| {
            let s = &g.spectrum;
            json!({
                "label": s.class_index,
                "name": s.class_name,
                "n": s.n,
                "knn_k": s.knn_k,
                "eigenvalues": s.eigenvalues,
                "largest_gap": s.largest_gap,
                "largest_gap_index": s.largest_gap_index,
                "estimated_clusters": s.estimated_clusters,
                "clusters": s.clusters,
                "lambda2": s.lambda2,
                "score": s.score,
                "contrast": {
                    "cluster": s.contrast.cluster,
                    "share": s.contrast.share,
                    "separation": s.contrast.separation,
                    "magnitude_shift": s.contrast.magnitude_shift,
                },
                "cut_off": {
                    "cluster": s.cut_off.cluster,
                    "share": s.cut_off.share,
                    "separation": s.cut_off.separation,
                    "magnitude_shift": s.cut_off.magnitude_shift,
                },
                "samples": g.samples.iter().map(|m| json!({
                    "index": m.image_index,
                    "cluster": m.cluster,
                    "split": m.split,
                    "tsne_x": m.tsne_x,
                    "tsne_y": m.tsne_y,
                    "centrality": m.centrality,
                    "spectral": m.spectral,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(serde_json::Value::from(out).to_string())
}

#[pymodule]
fn _spray(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SprayError", m.py().get_type::<SprayError>())?;
    m.add("ORT_VERSION", spray_engine::ORT_VERSION)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    Ok(())
}

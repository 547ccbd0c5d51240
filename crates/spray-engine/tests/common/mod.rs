#![allow(dead_code)]
//! Shared helpers for the engine's integration tests.

use std::path::PathBuf;

use ndarray::ArrayD;
use spray_lrp::{compile, CompileOptions, Composite, CompositeOptions, LrpModel};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lrp")
}

pub fn read_npy<T: ndarray_npy::ReadableElement>(path: &std::path::Path) -> ArrayD<T> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// z-box bounds the fixtures were generated with (ImageNet normalisation of [0, 1]).
pub fn fixture_options() -> CompositeOptions {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap()).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        manifest[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    };
    CompositeOptions {
        zbox_low: floats("zbox_low"),
        zbox_high: floats("zbox_high"),
    }
}

pub fn compile_fixture(model: &str, file: &str, composite: &str) -> LrpModel {
    let onnx = spray_onnx::load_model(&fixtures().join(model).join(file)).unwrap();
    let composite = Composite::builtin(composite, &fixture_options()).unwrap();
    compile(&onnx, &CompileOptions { composite, input: None }).unwrap()
}

pub const FIXTURE_MODELS: &[&str] = &["vgg_small", "resnet_small", "densenet_small", "resnet18", "vgg11"];

//! The `spray` binary end to end, as a user runs it.

mod common;

use std::path::{Path, PathBuf};

use ndarray::ArrayD;

use common::{scratch, spray_output as spray};

fn fixture(model: &str, file: &str) -> String {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures/lrp")
        .join(model)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn explain_writes_relevance_and_logits_matching_zennit() {
    let dir = scratch("cli", "explain");
    let (rel, logits) = (dir.join("r.npy"), dir.join("l.npy"));
    let out = spray(&[
        "explain",
        "--model",
        &fixture("vgg_small", "model.onnx"),
        "--input",
        &fixture("vgg_small", "input.npy"),
        "--target",
        &fixture("vgg_small", "targets.npy"),
        "--composite",
        "epsilon-plus-flat",
        "--batch-size",
        "3",
        "--out-relevance",
        path_str(&rel),
        "--out-logits",
        path_str(&logits),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: ArrayD<f32> = ndarray_npy::read_npy(&rel).unwrap();
    let expected: ArrayD<f32> =
        ndarray_npy::read_npy(fixture("vgg_small", "relevance_epsilon-plus-flat.npy")).unwrap();
    assert_eq!(r.shape(), expected.shape());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = (&r - &expected).iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(err <= 1e-4 * scale, "relative error {}", err / scale);
    let l: ArrayD<f32> = ndarray_npy::read_npy(&logits).unwrap();
    assert_eq!(l.shape(), &[4, 10]);
}

/// `--cache`: the first call keeps ONNX Runtime's optimised graph, the second loads it without
/// compiling (start-up paid once) and writes the same bytes; another composite is another entry
/// beside it.
#[test]
fn explain_with_a_cache_folder_gives_the_same_relevance_from_the_kept_graph() {
    let dir = scratch("cli", "explain-cache");
    let cache = dir.join("cache");
    let run = |composite: &str, name: &str| {
        let rel = dir.join(name);
        let out = spray(&[
            "explain",
            "--model",
            &fixture("vgg_small", "model.onnx"),
            "--input",
            &fixture("vgg_small", "input.npy"),
            "--composite",
            composite,
            "--out-relevance",
            path_str(&rel),
            "--cache",
            path_str(&cache),
            "-vv",
        ]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        (
            std::fs::read(rel).unwrap(),
            log.contains("optimised graph loaded"),
        )
    };
    let (first, loaded) = run("epsilon-plus-flat", "first.npy");
    assert!(!loaded);
    let entries = || std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries(), 1);
    assert_eq!(
        run("epsilon-plus-flat", "second.npy"),
        (first.clone(), true)
    );
    assert_eq!(entries(), 1);
    assert_ne!(run("epsilon", "other.npy").0, first);
    assert_eq!(entries(), 2, "another composite is another entry beside it");
    assert_eq!(run("epsilon-plus-flat", "third.npy"), (first, true));
}

#[test]
fn explain_accepts_a_class_index_and_a_custom_composite_file() {
    let dir = scratch("cli", "custom");
    let composite = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../configs/composites/thesis-custom.toml");
    let (custom, builtin) = (dir.join("custom.npy"), dir.join("builtin.npy"));
    for (comp, out_path) in [(path_str(&composite), &custom), ("thesis", &builtin)] {
        let out = spray(&[
            "explain",
            "--model",
            &fixture("resnet_small", "model.onnx"),
            "--input",
            &fixture("resnet_small", "input.npy"),
            "--target",
            "3",
            "--composite",
            comp,
            "--out-relevance",
            path_str(out_path),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a: ArrayD<f32> = ndarray_npy::read_npy(&custom).unwrap();
    let b: ArrayD<f32> = ndarray_npy::read_npy(&builtin).unwrap();
    assert_eq!(
        a, b,
        "the TOML spelling of the thesis composite must equal the built-in one"
    );
}

#[test]
fn inspect_shows_rules_merges_and_the_first_layer() {
    let out = spray(&[
        "inspect",
        &fixture("resnet_small", "model.onnx"),
        "--composite",
        "thesis",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[first layer]"), "{text}");
    assert!(
        text.contains("merged: /stem/stem.1/BatchNormalization"),
        "{text}"
    );
    assert!(
        text.contains("alpha-beta(2,1)") && text.contains("epsilon(0.01)") && text.contains("flat"),
        "{text}"
    );
}

#[test]
fn inspect_ops_prints_the_op_table() {
    let out = spray(&["inspect", "--ops"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |op: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(op))
            .unwrap_or_else(|| panic!("no row for {op}: {text}"))
            .to_owned()
    };
    assert!(row("Conv").contains("linear"), "{text}");
    assert!(row("MaxPool").contains("pooling") && row("MaxPool").contains("keeps ≥ 0"));
    assert!(row("LayerNormalization").contains("refused"), "{text}");
    assert!(text.contains("refused by name"), "{text}");
}

#[test]
fn compile_writes_a_loadable_model_with_logits_and_relevance_outputs() {
    let dir = scratch("cli", "compile");
    let path = dir.join("lrp.onnx");
    let out = spray(&[
        "lrp",
        "compile",
        "--model",
        &fixture("densenet_small", "model.onnx"),
        "--out",
        path_str(&path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = spray_onnx::load_model(&path).unwrap();
    let graph = model.graph.unwrap();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, vec!["logits", "relevance"]);
    assert!(graph.input.iter().any(|i| i.name == "target"));
    assert!(!dir.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
}

#[test]
fn unsupported_model_is_refused_with_op_and_node_before_reading_input() {
    use spray_onnx::{
        attr, data_type, proto::OperatorSetIdProto, value_info, ModelProto, NodeProto, Tensor,
    };
    let dir = scratch("cli", "unsupported");
    let mut graph = spray_onnx::GraphProto::default();
    graph
        .input
        .push(value_info("x", data_type::FLOAT, &[Err("N"), Ok(4)]));
    graph
        .initializer
        .push(Tensor::f32(vec![4, 4], vec![0.5; 16]).to_proto("w"));
    let node = |op: &str, name: &str, inputs: &[&str], out: &str, attrs| NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute: attrs,
        ..Default::default()
    };
    graph
        .node
        .push(node("MatMul", "dense", &["x", "w"], "h", vec![]));
    graph.node.push(node(
        "LpNormalization",
        "my_norm",
        &["h"],
        "y",
        vec![attr::int("axis", 1)],
    ));
    graph
        .output
        .push(value_info("y", data_type::FLOAT, &[Err("N"), Ok(4)]));
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let model_path = dir.join("bad.onnx");
    spray_onnx::save_model(&model, &model_path).unwrap();
    let rel = dir.join("r.npy");
    let out = spray(&[
        "explain",
        "--model",
        path_str(&model_path),
        "--input",
        "/nonexistent/input.npy",
        "--out-relevance",
        path_str(&rel),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LpNormalization node 'my_norm'"), "{err}");
    assert!(
        !err.contains("nonexistent"),
        "the model must be refused before the input is read: {err}"
    );
    assert!(!rel.exists());
}

#[test]
fn bad_input_gives_a_clear_error() {
    let dir = scratch("cli", "badinput");
    let bad = dir.join("x.npy");
    std::fs::write(&bad, b"not numpy").unwrap();
    let out = spray(&[
        "explain",
        "--model",
        &fixture("vgg_small", "model.onnx"),
        "--input",
        path_str(&bad),
        "--out-relevance",
        path_str(&dir.join("r.npy")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading") && err.contains("x.npy"), "{err}");
    let out = spray(&["inspect", path_str(&bad)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid ONNX model"));
}

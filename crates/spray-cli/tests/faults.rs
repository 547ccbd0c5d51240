//! The fault suite: broken models and files, concurrent writers, killed runs and full disks.
//! Each case must end in a clear error or a recorded, skipped input, never in a report built
//! on garbage and never in a file that looks complete but is not.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{repo, scratch, spray, spray_output};
use spray_onnx::{data_type, value_info, ModelProto, NodeProto, Tensor};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the user sees: `spray inspect` lists refused nodes on stdout.
fn shown(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

fn demo_model() -> ModelProto {
    spray_onnx::load_model(&repo().join("tests/demo/model.onnx")).unwrap()
}

/// Write a model without the load-time checks (a damaged file is what is under test).
fn save(model: &ModelProto, path: &Path) -> PathBuf {
    std::fs::write(path, spray_onnx::encode_model(model)).unwrap();
    path.to_owned()
}

/// A folder dataset of `per_class` demo images of two classes.
fn demo_subset(dir: &Path, per_class: usize) -> PathBuf {
    let root = dir.join("data");
    for class in ["cross", "triangle"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let name = format!("{class}_{i:03}.png");
            std::fs::copy(
                repo().join("tests/demo/data").join(class).join(&name),
                root.join(class).join(&name),
            )
            .unwrap();
        }
    }
    root
}

fn pipeline(dir: &Path, data: &Path, model: &Path, out: &str) -> PathBuf {
    let text = format!(
        "[dataset]\nkind = \"folder\"\nroot = \"{}\"\n[model]\npath = \"{}\"\ninput_size = [32, 32]\n\
         [relevance]\ngrids = [8]\npart_size = 16\nbatch_size = 8\n[analysis]\ngrid = 8\n\
         [output]\ndir = \"{out}\"\n",
        data.display(),
        model.display()
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The first float initializer read by a node of `op` at input position `slot`.
fn initializer_of<'m>(
    model: &'m mut ModelProto,
    op: &str,
    slot: usize,
) -> &'m mut spray_onnx::TensorProto {
    let graph = model.graph.as_mut().unwrap();
    let name = graph
        .node
        .iter()
        .find(|n| n.op_type == op && n.input.len() > slot)
        .map(|n| n.input[slot].clone())
        .unwrap();
    graph
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap()
}

fn set_values(t: &mut spray_onnx::TensorProto, f: impl Fn(usize, f32) -> f32) {
    let decoded = Tensor::from_proto(t).unwrap();
    let values: Vec<f32> = decoded
        .as_f32()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, &v)| f(i, v))
        .collect();
    let name = t.name.clone();
    *t = Tensor::f32(decoded.dims.clone(), values).to_proto(&name);
}

#[test]
fn a_nan_weight_is_refused_before_any_work() {
    let dir = scratch("faults", "nan-weight");
    let mut model = demo_model();
    let weight = initializer_of(&mut model, "Conv", 1);
    let name = weight.name.clone();
    set_values(weight, |i, v| if i == 5 { f32::NAN } else { v });
    let path = save(&model, &dir.join("nan.onnx"));

    let out = spray_output(&[
        "explain",
        "--model",
        path.to_str().unwrap(),
        "--input",
        "/nonexistent.npy",
        "--out-relevance",
        dir.join("r.npy").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("NaN") && err.contains(&name), "{err}");
    assert!(
        !err.contains("nonexistent"),
        "refused only after reading input: {err}"
    );

    let data = demo_subset(&dir, 4);
    let p = pipeline(&dir, &data, &path, "out");
    let out = spray_output(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NaN"), "{}", stderr(&out));
    assert!(files_starting(&dir.join("out/relevance"), "part-").is_empty());
    assert!(!dir.join("out/report").exists());
}

#[test]
fn a_model_with_non_finite_logits_stops_on_the_first_batch() {
    let dir = scratch("faults", "inf-bias");
    let mut model = demo_model();
    let bias = initializer_of(&mut model, "Conv", 2);
    let name = bias.name.clone();
    set_values(bias, |_, _| f32::INFINITY);
    let path = save(&model, &dir.join("inf.onnx"));
    let data = demo_subset(&dir, 4);
    let p = pipeline(&dir, &data, &path, "out");
    let out = spray_output(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("NaN or infinite for all"), "{err}");
    assert!(err.contains(&name), "the infinite constant is named: {err}");
    assert!(files_starting(&dir.join("out/relevance"), "part-").is_empty());
    assert!(!dir.join("out/analysis").exists() && !dir.join("out/report").exists());
}

#[test]
fn explain_fails_on_non_finite_output() {
    let dir = scratch("faults", "explain-nan");
    let mut input = ndarray::Array4::<f32>::from_elem((3, 3, 32, 32), 0.5);
    input[[1, 0, 4, 4]] = f32::NAN;
    let x = dir.join("x.npy");
    ndarray_npy::write_npy(&x, &input).unwrap();
    let out = spray_output(&[
        "explain",
        "--model",
        repo().join("tests/demo/model.onnx").to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--out-relevance",
        dir.join("r.npy").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("1 of 3 sample(s)") && err.contains("sample 1"),
        "{err}"
    );
}

#[test]
fn truncated_images_become_error_rows_and_the_rest_is_analysed() {
    let dir = scratch("faults", "truncated");
    let data = demo_subset(&dir, 8);
    // Re-encode three triangles as JPEG and cut them inside the scan data; the other five
    // stay whole JPEGs.
    let mut cut = Vec::new();
    for i in 0..8 {
        let png = data.join(format!("triangle/triangle_{i:03}.png"));
        let img = image::open(&png).unwrap().to_rgb8();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode_image(&img)
            .unwrap();
        std::fs::remove_file(&png).unwrap();
        let jpg = png.with_extension("jpg");
        if i < 3 {
            bytes.truncate(bytes.len() * (5 + i) / 10);
            cut.push(format!("triangle/triangle_{i:03}"));
        }
        std::fs::write(&jpg, bytes).unwrap();
    }
    let p = pipeline(&dir, &data, &repo().join("tests/demo/model.onnx"), "out");
    spray(&["run", p.to_str().unwrap(), "--quiet"]);
    let mut reasons = Vec::new();
    for f in files_starting(&dir.join("out/relevance"), "errors-") {
        for e in spray_store::relevance::read_errors(&f).unwrap() {
            reasons.push((e.sample_id, e.reason));
        }
    }
    reasons.sort();
    let ids: Vec<&String> = reasons.iter().map(|r| &r.0).collect();
    assert_eq!(ids, cut.iter().collect::<Vec<_>>(), "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.1.contains("truncated JPEG")),
        "{reasons:?}"
    );
    let samples = std::fs::read_to_string(dir.join("out/report/samples.csv")).unwrap();
    assert_eq!(samples.lines().count(), 1 + 16 - 3);
    assert!(cut.iter().all(|c| !samples.contains(c.as_str())));
}

fn one_layer_model(
    out_dims: &[Result<i64, &'static str>],
    weight_dims: Vec<i64>,
    op: &str,
) -> ModelProto {
    let mut graph = spray_onnx::GraphProto::default();
    graph.input.push(value_info(
        "x",
        data_type::FLOAT,
        &[Err("N"), Ok(3), Ok(32), Ok(32)],
    ));
    let n: i64 = weight_dims.iter().product();
    graph
        .initializer
        .push(Tensor::f32(weight_dims, vec![0.1; n as usize]).to_proto("w"));
    let (input, extra) = if op == "Conv" {
        ("x".to_owned(), None)
    } else {
        ("flat".to_owned(), Some("Flatten"))
    };
    if let Some(flatten) = extra {
        graph.node.push(NodeProto {
            op_type: flatten.into(),
            name: "flatten".into(),
            input: vec!["x".into()],
            output: vec!["flat".into()],
            ..Default::default()
        });
    }
    graph.node.push(NodeProto {
        op_type: op.into(),
        name: "layer".into(),
        input: vec![input, "w".into()],
        output: vec!["y".into()],
        ..Default::default()
    });
    graph
        .output
        .push(value_info("y", data_type::FLOAT, out_dims));
    ModelProto {
        ir_version: 8,
        opset_import: vec![spray_onnx::proto::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

#[test]
fn outputs_that_are_not_class_logits_are_refused_with_the_shape() {
    let dir = scratch("faults", "output-shape");
    let image_to_image =
        one_layer_model(&[Err("N"), Ok(3), Ok(32), Ok(32)], vec![3, 3, 1, 1], "Conv");
    let single_logit = one_layer_model(&[Err("N"), Ok(1)], vec![3072, 1], "MatMul");
    for (name, model, expected) in [
        ("i2i", image_to_image, "has shape [N, 3, 32, 32]"),
        ("one", single_logit, "at least 2 classes"),
    ] {
        let path = save(&model, &dir.join(format!("{name}.onnx")));
        let out = spray_output(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = shown(&out);
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn a_newer_ir_version_is_lowered_and_a_newer_opset_refused() {
    let dir = scratch("faults", "versions");
    let mut input = ndarray::Array4::<f32>::zeros((2, 3, 32, 32));
    input
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = (i % 17) as f32 / 17.0);
    let x = dir.join("x.npy");
    ndarray_npy::write_npy(&x, &input).unwrap();
    let explain = |model: &Path, out: &Path| {
        spray_output(&[
            "explain",
            "--model",
            model.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--out-relevance",
            out.to_str().unwrap(),
        ])
    };
    let mut model = demo_model();
    model.ir_version = 14; // what the current `onnx` package writes
    let ir14 = save(&model, &dir.join("ir14.onnx"));
    let out = explain(&ir14, &dir.join("r14.npy"));
    assert!(out.status.success(), "{}", stderr(&out));
    let original = explain(&repo().join("tests/demo/model.onnx"), &dir.join("r.npy"));
    assert!(original.status.success());
    let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("r14.npy")).unwrap();
    let b: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("r.npy")).unwrap();
    assert_eq!(a, b);

    let mut model = demo_model();
    model.ir_version = 14;
    for o in &mut model.opset_import {
        o.version = 30;
    }
    let new_opset = save(&model, &dir.join("opset30.onnx"));
    let out = explain(&new_opset, &dir.join("r30.npy"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("opset 30") && err.contains("re-export"),
        "{err}"
    );
    assert!(!err.contains("onnxruntime_src"), "{err}");
}

#[test]
fn hostile_onnx_files_are_refused_clearly() {
    let dir = scratch("faults", "hostile-onnx");
    let demo = std::fs::read(repo().join("tests/demo/model.onnx")).unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "no graph"),
        (
            "truncated",
            demo[..demo.len() / 2].to_vec(),
            "not a valid ONNX model",
        ),
        ("text", b"<html>not a model</html>\n".to_vec(), ""),
        (
            "random",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "",
        ),
    ];
    // A cycle: the first node reads the output of the last.
    let mut cyclic = demo_model();
    {
        let graph = cyclic.graph.as_mut().unwrap();
        let last = graph.node.last().unwrap().output[0].clone();
        graph.node[0].input[0] = last;
    }
    cases.push(("cycle", spray_onnx::encode_model(&cyclic), "cycle"));
    // Lying dims: the first Conv's weight claims more values than it holds.
    let mut lying = demo_model();
    initializer_of(&mut lying, "Conv", 1).dims[0] *= 2;
    cases.push(("lying", spray_onnx::encode_model(&lying), "bytes of data"));
    // An op from a custom domain on the relevance path.
    let mut custom = demo_model();
    {
        let graph = custom.graph.as_mut().unwrap();
        let relu = graph.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        relu.op_type = "FancyRelu".into();
        relu.domain = "com.example".into();
        custom
            .opset_import
            .push(spray_onnx::proto::OperatorSetIdProto {
                domain: "com.example".into(),
                version: 1,
            });
    }
    cases.push(("custom", spray_onnx::encode_model(&custom), "FancyRelu"));
    // External data that points outside the model's folder.
    std::fs::write(dir.join("secret.bin"), [0u8; 4096]).unwrap();
    let inside = dir.join("models");
    std::fs::create_dir_all(&inside).unwrap();
    std::os::unix::fs::symlink(dir.join("secret.bin"), inside.join("link.bin")).unwrap();
    for (name, location, expected) in [
        ("climb", "../secret.bin", "relative path inside"),
        ("absolute", "/etc/passwd", "relative path inside"),
        ("link", "link.bin", "outside the model's folder"),
    ] {
        let mut m = demo_model();
        let t = initializer_of(&mut m, "Conv", 1);
        t.raw_data.clear();
        t.data_location = 1;
        t.external_data = vec![spray_onnx::proto::StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        }];
        std::fs::write(
            inside.join(format!("{name}.onnx")),
            spray_onnx::encode_model(&m),
        )
        .unwrap();
        let out = spray_output(&[
            "inspect",
            inside.join(format!("{name}.onnx")).to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
    }
    for (name, bytes, expected) in cases {
        let path = dir.join(format!("{name}.onnx"));
        std::fs::write(&path, bytes).unwrap();
        for args in [
            vec!["inspect", path.to_str().unwrap()],
            vec![
                "explain",
                "--model",
                path.to_str().unwrap(),
                "--input",
                "/nonexistent.npy",
                "--out-relevance",
                "/nonexistent/r.npy",
            ],
        ] {
            let out = spray_output(&args);
            let err = shown(&out);
            // Exit code 1 is a reported error; a panic would be 101.
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}: {err}");
            assert!(err.contains(expected), "{name}: {err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
        }
    }
}

#[test]
fn one_writer_per_output_folder() {
    use spray_store::{LockMode, OutputLock};
    let dir = scratch("faults", "lock");
    let data = demo_subset(&dir, 4);
    let p = pipeline(&dir, &data, &repo().join("tests/demo/model.onnx"), "out");
    let p = p.to_str().unwrap();
    let out_dir = dir.join("out");

    // Another run holds the folder (an advisory lock conflicts across open files as it does
    // across processes).
    let held = OutputLock::acquire(&out_dir, LockMode::Exclusive, "spray run", None).unwrap();
    for args in [
        vec!["run", p, "--quiet"],
        vec![
            "run",
            p,
            "--quiet",
            "--stage",
            "relevance",
            "--shard",
            "0/2",
        ],
    ] {
        let out = spray_output(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("in use by another spray process"),
            "{}",
            stderr(&out)
        );
    }
    drop(held);

    // Shards share the folder; a plain run and a second copy of the same shard do not.
    let shard0 = when_released(|| {
        OutputLock::acquire(
            &out_dir,
            LockMode::Shared,
            "relevance shard 0/2",
            Some(("relevance", 0, 2)),
        )
    });
    let out = spray_output(&["run", p, "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = spray_output(&[
        "run",
        p,
        "--quiet",
        "--stage",
        "relevance",
        "--shard",
        "0/2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    spray(&[
        "run",
        p,
        "--quiet",
        "--stage",
        "relevance",
        "--shard",
        "1/2",
    ]);
    drop(shard0);

    // The lock file stays behind, unlocked: it never blocks a later run.
    assert!(out_dir.join(".spray.lock").is_file());
    let out = when_released(|| {
        let out = spray_output(&["run", p, "--quiet"]);
        if stderr(&out).contains("in use by another spray process") {
            Err(stderr(&out))
        } else {
            Ok(out)
        }
    });
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `attempt` until it stops failing, for up to 10 s. Why: a lock this test process has just
/// released can stay held a moment longer — another test's thread that starts a child
/// process between our open and our close hands the child a copy of the descriptor, and
/// `flock` holds until the child has exec'd (seen once on a loaded CI machine).
fn when_released<T, E: std::fmt::Debug>(mut attempt: impl FnMut() -> Result<T, E>) -> T {
    let start = std::time::Instant::now();
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("still held: {e:?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn report_csvs(out: &Path) -> Vec<String> {
    ["classes.csv", "samples.csv", "clusters.csv"]
        .iter()
        .map(|f| std::fs::read_to_string(out.join("report").join(f)).unwrap())
        .collect()
}

/// Every visible table must be complete: it reads back.
fn assert_visible_files_complete(out: &Path) {
    for stage in ["relevance", "analysis"] {
        for f in files_starting(&out.join(stage), "") {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".parquet") && !name.starts_with('.') {
                spray_store::read_batches(&f)
                    .unwrap_or_else(|e| panic!("{} is visible but unreadable: {e}", f.display()));
            }
        }
    }
}

#[test]
fn repeated_kill_9_then_resume_gives_identical_csvs() {
    let dir = scratch("faults", "kill");
    // The whole demo: a run takes about a second on 2 cores, so kills land in every stage.
    let data = repo().join("tests/demo/data");
    let model = repo().join("tests/demo/model.onnx");
    let whole = pipeline(&dir, &data, &model, "whole");
    spray(&["run", whole.to_str().unwrap(), "--quiet"]);
    let p = pipeline(&dir, &data, &model, "killed");
    let mut kills = 0;
    let mut parts_before = 0;
    for delay_ms in [80u64, 160, 240, 320, 450, 600, 800] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spray"))
            .args(["run", p.to_str().unwrap(), "--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        assert_visible_files_complete(&dir.join("killed"));
        // Finished parts are kept: a killed run never loses what an earlier one wrote.
        let parts = files_starting(&dir.join("killed/relevance"), "part-").len();
        assert!(parts >= parts_before, "{parts} parts after {parts_before}");
        parts_before = parts;
    }
    assert!(
        kills >= 2,
        "the run finished too early to be killed ({kills} kills)"
    );
    spray(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(
        report_csvs(&dir.join("whole")),
        report_csvs(&dir.join("killed"))
    );
}

/// A small tmpfs at `path`; `None` where this process may not mount (not root, no tmpfs).
fn mount_tmpfs(path: &Path, size: &str) -> Option<()> {
    std::fs::create_dir_all(path).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
}

fn remount(path: &Path, options: &str) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,{options}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "remount {options}");
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_or_read_only_folder_is_a_clear_error_and_a_rerun_resumes() {
    let dir = scratch("faults", "disk");
    let data = demo_subset(&dir, 40);
    let model = repo().join("tests/demo/model.onnx");
    let whole = pipeline(&dir, &data, &model, "whole");
    spray(&["run", whole.to_str().unwrap(), "--quiet"]);
    let out_dir = dir.join("small");
    // Five parts of about 150 KB each after the compiled LRP model (`relevance/_lrp/`, about
    // 310 KB since unmodified rule terms stopped copying weights): the disk fills up after the
    // first two or three parts.
    if mount_tmpfs(&out_dir, "800k").is_none() {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(out_dir.clone());
    let p = pipeline(&dir, &data, &model, "small");
    let out = spray_output(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert_visible_files_complete(&out_dir);
    assert!(!out_dir.join("report/index.html").exists());
    let written = files_starting(&out_dir.join("relevance"), "part-");
    assert!(
        !written.is_empty(),
        "no part fitted: the resume below proves nothing"
    );
    let first_written = std::fs::metadata(&written[0]).unwrap().modified().unwrap();

    // Read-only: refused up front (the lock cannot be written), nothing changes.
    remount(&out_dir, "ro");
    let out = spray_output(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );

    // Space freed: the rerun resumes and ends where an uninterrupted run ends.
    remount(&out_dir, "rw,size=64m");
    let rerun = String::from_utf8_lossy(&spray(&["run", p.to_str().unwrap(), "--quiet"]).stdout)
        .into_owned();
    assert!(
        rerun
            .lines()
            .any(|l| l.starts_with("relevance") && l.contains("resumed")),
        "{rerun}"
    );
    assert_eq!(
        std::fs::metadata(&written[0]).unwrap().modified().unwrap(),
        first_written,
        "a finished part was rewritten"
    );
    assert_eq!(report_csvs(&dir.join("whole")), report_csvs(&out_dir));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A well-formed PNG header claiming 100,000 × 100,000 pixels over a few bytes of data.
fn decompression_bomb() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    // zlib stream of a few zero bytes (stored block)
    out.extend(png_chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0, 0x04, 0x00, 0x01,
        ],
    ));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

#[test]
fn hostile_image_files_are_recorded_and_skipped() {
    let dir = scratch("faults", "hostile-images");
    let data = demo_subset(&dir, 6);
    let cross = data.join("cross");
    let whole_png = std::fs::read(cross.join("cross_000.png")).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&image::open(cross.join("cross_000.png")).unwrap().to_rgb8())
        .unwrap();
    let random: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero.png", Vec::new(), "empty file"),
        ("random.jpg", random, "not an image"),
        (
            "page.jpg",
            b"<!DOCTYPE html><html></html>".to_vec(),
            "not an image",
        ),
        (
            "cut.png",
            whole_png[..whole_png.len() / 2].to_vec(),
            "truncated PNG",
        ),
        (
            "cut_scan.jpg",
            jpeg[..jpeg.len() * 2 / 3].to_vec(),
            "truncated JPEG",
        ),
        ("cut_header.jpg", jpeg[..40].to_vec(), "truncated JPEG"),
        ("bomb.png", decompression_bomb(), "cannot decode"),
    ];
    for (name, bytes, _) in &hostile {
        std::fs::write(cross.join(name), bytes).unwrap();
    }
    std::os::unix::fs::symlink(cross.join("loop_b.png"), cross.join("loop_a.png")).unwrap();
    std::os::unix::fs::symlink(cross.join("loop_a.png"), cross.join("loop_b.png")).unwrap();
    std::os::unix::fs::symlink(dir.join("missing.png"), cross.join("dangling.png")).unwrap();

    let p = pipeline(&dir, &data, &repo().join("tests/demo/model.onnx"), "out");
    spray(&["run", p.to_str().unwrap(), "--quiet"]);
    let mut errors = Vec::new();
    for f in files_starting(&dir.join("out/relevance"), "errors-") {
        errors.extend(spray_store::relevance::read_errors(&f).unwrap());
    }
    for (name, _, reason) in &hostile {
        let stem = name.rsplit_once('.').unwrap().0;
        let e = errors
            .iter()
            .find(|e| e.sample_id == format!("cross/{stem}"))
            .unwrap_or_else(|| panic!("{name} not recorded: {errors:?}"));
        assert!(e.reason.contains(reason), "{name}: {}", e.reason);
    }
    for stem in ["loop_a", "loop_b", "dangling"] {
        // Either listed as an error or not listed as a sample at all; never analysed.
        assert!(
            errors
                .iter()
                .any(|e| e.sample_id == format!("cross/{stem}"))
                || !std::fs::read_to_string(dir.join("out/report/samples.csv"))
                    .unwrap()
                    .contains(stem),
            "{stem}"
        );
    }
    let samples = std::fs::read_to_string(dir.join("out/report/samples.csv")).unwrap();
    assert_eq!(
        samples.lines().count(),
        1 + 12,
        "exactly the 12 sound images analysed"
    );
}

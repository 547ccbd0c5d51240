//! `spray run` end to end on the bundled demo: ranking, caching, sharded assembly, the
//! report's CSVs and HTML (the latter in headless Chromium when available).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{
    csv_rows, repo, report_pages, report_text, scratch, spray, spray_output, stdout, write_pipeline,
};

fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    for stage in ["relevance", "analysis", "report"] {
        let d = dir.join(stage);
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.insert(e.path(), e.metadata().unwrap().modified().unwrap());
        }
    }
    out
}

fn browser_check(report: &Path, screenshot: &Path, hostile: Option<&str>) {
    let script = repo().join("tests/browser/check_report.mjs");
    let ready = Path::new("/usr/bin/chromium").exists()
        && repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists();
    if !ready {
        assert!(
            std::env::var_os("SPRAY_REQUIRE_BROWSER").is_none(),
            "SPRAY_REQUIRE_BROWSER is set but Chromium or playwright-core is missing (run scripts/test.sh)"
        );
        eprintln!("skipping the browser check: Chromium or playwright-core not installed (scripts/test.sh installs them)");
        return;
    }
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(report).arg(screenshot);
    if let Some(h) = hostile {
        cmd.arg(h);
    }
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(screenshot.is_file());
}

fn artefact_dir() -> PathBuf {
    let dir = repo().join("target/test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_ranks_the_watermarked_class_first_and_caches() {
    let dir = scratch("pipeline", "demo");
    let data = repo().join("tests/demo/data");
    let pipeline = write_pipeline(&dir, &data, 8);
    let p = pipeline.to_str().unwrap();
    let first = spray(&["run", p, "--quiet"]);
    let text = stdout(&first);
    assert!(text.contains("report:"), "{text}");
    let out = dir.join("out");

    // The ranking: the watermarked class first.
    let classes = csv_rows(&out.join("report/classes.csv"));
    assert_eq!(classes.len(), 4);
    assert_eq!(classes[0]["class"], "triangle", "ranking: {classes:?}");
    for col in [
        "rank",
        "n",
        "lambda_1",
        "lambda_20",
        "largest_gap",
        "largest_gap_index",
        "estimated_clusters",
        "score",
    ] {
        assert!(classes[0].contains_key(col), "classes.csv lacks {col}");
    }
    assert!(text.contains("flagged: triangle"), "{text}");
    // The compiled LRP model is kept for the next process (a shard, a resumed run, verify):
    // one model and its JSON, ONNX Runtime's optimised graph of it (a complete entry), and in
    // forward/ that of its forward half (the verify stage's scorer).
    let lrp = out.join("relevance/_lrp");
    let mut kept: Vec<String> = std::fs::read_dir(&lrp)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name == "forward" {
                return name;
            }
            match name.strip_prefix("ort-") {
                Some(_) => {
                    assert!(lrp.join(&name).join("entry.json").is_file(), "{name}");
                    "ort".to_owned()
                }
                None => name.rsplit('.').next().unwrap().to_owned(),
            }
        })
        .collect();
    kept.sort();
    assert_eq!(kept, ["forward", "json", "onnx", "ort"]);
    let forward: Vec<_> = std::fs::read_dir(lrp.join("forward")).unwrap().collect();
    assert_eq!(forward.len(), 1);
    // The reviewer's columns say the same as stdout, and why.
    assert_eq!(classes[0]["flagged"], "true", "{:?}", classes[0]);
    assert!(!classes[0]["flagged_by"].is_empty(), "{:?}", classes[0]);
    assert!(
        classes[1..].iter().all(|c| c["flagged"] == "false"),
        "{classes:?}"
    );
    assert!(classes.iter().all(|c| !c["reason"].is_empty()));

    // samples.csv: 400 readable images (one corrupt file skipped), one row each.
    let samples = csv_rows(&out.join("report/samples.csv"));
    assert_eq!(samples.len(), 400);
    for col in [
        "sample_id",
        "path",
        "class",
        "labels",
        "target_logit",
        "predicted_class",
        "cluster",
        "tsne_x",
        "tsne_y",
    ] {
        assert!(samples[0].contains_key(col), "samples.csv lacks {col}");
    }
    let clusters = csv_rows(&out.join("report/clusters.csv"));
    let total: usize = clusters
        .iter()
        .map(|r| r["size"].parse::<usize>().unwrap())
        .sum();
    assert_eq!(total, 400);

    // The watermarked images form their own clusters: every triangle cluster is (almost)
    // pure, and the watermarked clusters hold (almost) all watermarked images.
    let marks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/demo/watermarks.json")).unwrap(),
    )
    .unwrap();
    let marked: HashSet<String> = marks["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().trim_end_matches(".png").to_owned())
        .collect();
    let mut per_cluster: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s["class"] == "triangle") {
        let e = per_cluster.entry(s["cluster"].clone()).or_default();
        e.0 += 1;
        if marked.contains(&s["sample_id"]) {
            e.1 += 1;
        }
    }
    let mut in_marked_clusters = 0;
    for (cluster, (size, with_mark)) in &per_cluster {
        let purity = (*with_mark).max(size - with_mark) as f64 / *size as f64;
        assert!(
            purity >= 0.9,
            "cluster {cluster} mixes: {with_mark} of {size} watermarked"
        );
        if *with_mark * 2 > *size {
            in_marked_clusters += with_mark;
        }
    }
    assert!(
        in_marked_clusters as f64 >= 0.9 * marked.len() as f64,
        "watermarked clusters hold {in_marked_clusters} of {}",
        marked.len()
    );

    // Report present: an index that lists the skipped corrupt file and links a page per class,
    // each page bounded.
    let pages = report_pages(&out.join("report"));
    assert!(pages[0].1.contains("square_broken.png"));
    assert_eq!(pages.len(), 1 + 4, "index and one page per class");
    for class in ["cross", "disc", "square", "triangle"] {
        assert!(
            pages[1..].iter().any(
                |(_, text)| text.contains("<h1>#") && text.contains(&format!(" {class} <span"))
            ),
            "no page for {class}"
        );
    }
    for (path, text) in &pages {
        assert!(
            text.len() < 4_000_000,
            "{} too large: {} bytes",
            path.display(),
            text.len()
        );
    }
    browser_check(
        &out.join("report/index.html"),
        &artefact_dir().join("demo-report.png"),
        None,
    );

    // A second run recomputes nothing.
    let before = mtimes(&out);
    let second = stdout(&spray(&["run", p, "--quiet"]));
    for stage in ["relevance", "analyze", "report"] {
        assert!(
            second
                .lines()
                .any(|l| l.starts_with(stage) && l.contains("cached")),
            "{stage} not cached:\n{second}"
        );
    }
    assert_eq!(before, mtimes(&out), "files changed on a cached run");

    // A reader that goes away (`spray run … | head`) is no failure and no panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spray"))
        .args(["run", p, "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&closed.stderr);
    assert!(
        closed.status.success() && !err.contains("panicked"),
        "{err}"
    );

    // Changing analysis.grid reruns analyze and report only.
    write_pipeline(&dir, &data, 4);
    let third = stdout(&spray(&["run", p, "--quiet"]));
    assert!(
        third
            .lines()
            .any(|l| l.starts_with("relevance") && l.contains("cached")),
        "{third}"
    );
    assert!(
        third
            .lines()
            .any(|l| l.starts_with("analyze") && l.contains("ran")),
        "{third}"
    );
    assert!(
        third
            .lines()
            .any(|l| l.starts_with("report") && l.contains("ran")),
        "{third}"
    );
    let after = mtimes(&out);
    for (path, time) in &before {
        if path.to_string_lossy().contains("/relevance/") {
            assert_eq!(
                after.get(path),
                Some(time),
                "{} was rewritten",
                path.display()
            );
        }
    }

    // --force reruns one stage.
    let forced = stdout(&spray(&["run", p, "--quiet", "--force", "report"]));
    assert!(
        forced
            .lines()
            .any(|l| l.starts_with("report") && l.contains("ran")),
        "{forced}"
    );
    assert!(
        forced
            .lines()
            .any(|l| l.starts_with("analyze") && l.contains("cached")),
        "{forced}"
    );

    // Fewer class pages: the report reruns alone, the earlier run's other pages are gone and
    // the index links only the pages that exist.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("[output]", "[report]\ndetail_classes = 2\n\n[output]"),
    )
    .unwrap();
    let fewer = stdout(&spray(&["run", p, "--quiet"]));
    assert!(
        fewer
            .lines()
            .any(|l| l.starts_with("report") && l.contains("ran") && l.contains("2 class page(s)")),
        "{fewer}"
    );
    let pages = report_pages(&out.join("report"));
    assert_eq!(pages.len(), 1 + 2, "stale class pages left behind");
    let index = &pages[0].1;
    // Distinct targets: a flagged class is linked from the flagged list and its ranking row.
    let linked: HashSet<&str> = index
        .split("href=\"classes&#x2f;")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(linked.len(), 2, "pages linked from the index: {linked:?}");
    for (path, _) in &pages[1..] {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            index.contains(&format!("classes&#x2f;{name}")),
            "{name} not linked"
        );
    }
}

/// A pipeline whose paths are relative to its file names the same files however the file is
/// named: run by its absolute path from elsewhere, then from its own folder by its bare name,
/// the relevance stage is not computed again and the analysis finds it complete; so after the
/// whole project folder moved. A stage asked for before the one it reads ran, or after that
/// one's settings changed, says which.
#[test]
fn a_pipeline_named_from_its_folder_reuses_the_run_named_from_elsewhere() {
    let dir = scratch("pipeline", "relative");
    std::os::unix::fs::symlink(repo().join("tests/demo/data"), dir.join("data")).unwrap();
    let pipeline = write_pipeline(&dir, Path::new("data"), 8);
    let p = pipeline.to_str().unwrap();
    // Before the relevance stage ran, the analysis says so.
    let early = spray_output(&["analyze", p]);
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        !early.status.success() && err.contains("the relevance stage has not run"),
        "{err}"
    );
    let first = stdout(&spray(&["relevance", p]));
    assert!(first.contains("ran"), "{first}");
    let in_folder = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_spray"))
            .args(args)
            .current_dir(&*dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "spray {args:?}: {text}");
        text
    };
    let again = in_folder(&["relevance", "pipeline.toml"]);
    assert!(
        again.contains("cached") && !again.contains("ran"),
        "{again}"
    );
    let analyze = in_folder(&["analyze", "pipeline.toml"]);
    assert!(analyze.contains("ran"), "{analyze}");

    // The whole project moved elsewhere (a run made on a cluster, looked at on a laptop): the
    // same files under another absolute path, nothing computed again.
    let elsewhere = scratch("pipeline", "relative-moved");
    let moved = elsewhere.join("project");
    std::fs::rename(&*dir, &moved).unwrap();
    let pipeline = moved.join("pipeline.toml");
    let p = pipeline.to_str().unwrap();
    for stage in ["relevance", "analyze"] {
        let again = stdout(&spray(&[stage, p]));
        assert!(
            again.contains("cached") && !again.contains("ran"),
            "{again}"
        );
    }

    // Another relevance setting: the stored relevance is of other settings, and the analysis
    // says that, not that shards are missing.
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, text.replace("grids = [8]", "grids = [4]")).unwrap();
    let stale = spray_output(&["analyze", p]);
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(
        !stale.status.success() && err.contains("holds results of other inputs or settings"),
        "{err}"
    );
}

#[test]
fn array_of_local_processes_matches_an_unsharded_run() {
    let data = repo().join("tests/demo/data");
    let whole = scratch("pipeline", "whole");
    let p_whole = write_pipeline(&whole, &data, 8);
    spray(&["run", p_whole.to_str().unwrap(), "--quiet"]);

    // A resumed relevance stage reads the compiled model's signature alone and loads ONNX
    // Runtime's kept graph of it (compiling and optimising nothing), and the part it computes
    // again is the same file.
    let part = whole.join("out/relevance/part-00001.parquet");
    let before = std::fs::read(&part).unwrap();
    std::fs::remove_file(&part).unwrap();
    let resumed = spray(&[
        "run",
        p_whole.to_str().unwrap(),
        "--quiet",
        "--stage",
        "relevance",
        "-vv",
    ]);
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(log.contains("optimised graph loaded"), "{log}");
    assert_eq!(std::fs::read(&part).unwrap(), before);

    // Like a Slurm array: the relevance shards run at the same time, then the analyze shards,
    // then one plain run assembles.
    let sharded = scratch("pipeline", "sharded");
    let p = write_pipeline(&sharded, &data, 8);
    let p = p.to_str().unwrap().to_owned();
    let children: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_spray"))
                .args([
                    "run",
                    &p,
                    "--quiet",
                    "--stage",
                    "relevance",
                    "--shard",
                    &format!("{i}/3"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                // spawn, not output: all three must be running before any is waited for
                .spawn()
                .expect("start spray")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..2 {
        spray(&[
            "run",
            &p,
            "--quiet",
            "--stage",
            "analyze",
            "--shard",
            &format!("{i}/2"),
        ]);
    }
    // The verify stage by class: the first shard leaves it partial, the second assembles.
    let verify_shard = |i: usize| {
        stdout(&spray(&[
            "run",
            &p,
            "--quiet",
            "--stage",
            "verify",
            "--shard",
            &format!("{i}/2"),
        ]))
    };
    let first = verify_shard(0);
    assert!(
        first.starts_with("verify") && first.contains("partial"),
        "{first}"
    );
    let second = verify_shard(1);
    assert!(
        second.starts_with("verify") && second.contains("ran"),
        "{second}"
    );
    let last = stdout(&spray(&["run", &p, "--quiet"]));
    for stage in ["relevance", "analyze", "verify"] {
        assert!(
            last.lines()
                .any(|l| l.starts_with(stage) && l.contains("cached")),
            "{stage}: {last}"
        );
    }
    for file in ["evidence.csv", "evidence.json", "padding.csv", "aopc.csv"] {
        let a = std::fs::read_to_string(whole.join("out/verify").join(file)).unwrap();
        let b = std::fs::read_to_string(sharded.join("out/verify").join(file)).unwrap();
        assert!(
            a == b,
            "verify/{file} differs between sharded and unsharded runs"
        );
    }

    // A killed verify run resumes: finished parts are kept, the rest recomputed, same
    // tables. Class 1 lost its evidence part; its tables part, and class 3's parts, stay.
    let verify = whole.join("out/verify");
    let evidence = std::fs::read_to_string(verify.join("evidence.csv")).unwrap();
    std::fs::remove_file(verify.join("evidence.csv")).unwrap();
    std::fs::remove_file(verify.join("units/class-00001.evidence.toml")).unwrap();
    let modified = |file: &str| {
        std::fs::metadata(verify.join("units").join(file))
            .unwrap()
            .modified()
            .unwrap()
    };
    let kept_files = [
        "class-00001.tables.toml",
        "class-00003.evidence.toml",
        "class-00003.tables.toml",
    ];
    let kept = kept_files.map(modified);
    let resumed = stdout(&spray(&["run", p_whole.to_str().unwrap(), "--quiet"]));
    assert!(
        resumed.lines().any(|l| l.starts_with("verify")
            && l.contains("resumed")
            && l.contains("3 classes were already done")),
        "{resumed}"
    );
    assert_eq!(kept_files.map(modified), kept);
    assert!(verify.join("units/class-00001.evidence.toml").is_file());
    assert_eq!(
        std::fs::read_to_string(verify.join("evidence.csv")).unwrap(),
        evidence
    );

    for file in ["classes.csv", "samples.csv", "clusters.csv"] {
        let a = std::fs::read_to_string(whole.join("out/report").join(file)).unwrap();
        let b = std::fs::read_to_string(sharded.join("out/report").join(file)).unwrap();
        let first_difference = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(
            a == b,
            "{file} differs between sharded and unsharded runs, first at line {first_difference:?}"
        );
    }
}

#[test]
fn hostile_names_render_as_text() {
    let dir = scratch("pipeline", "hostile");
    let data = dir.join("data");
    let demo = repo().join("tests/demo/data");
    // Two classes, one of them with markup in its name, and a file named like an XSS probe.
    let hostile_class = "<b onclick=alert(2)>square";
    for (class, src) in [("disc", "disc"), (hostile_class, "square")] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..12 {
            let from = demo.join(src).join(format!("{src}_{i:03}.png"));
            std::fs::copy(&from, data.join(class).join(format!("{src}_{i:03}.png"))).unwrap();
        }
    }
    let hostile_file = "<img src=x onerror=alert(1)>";
    std::fs::copy(
        demo.join("disc/disc_050.png"),
        data.join("disc").join(format!("{hostile_file}.png")),
    )
    .unwrap();
    let pipeline = write_pipeline(&dir, &data, 8);
    spray(&["run", pipeline.to_str().unwrap(), "--quiet"]);
    let html = report_text(&dir.join("out/report"));
    assert!(
        !html.contains(hostile_file),
        "raw hostile file name in the HTML"
    );
    assert!(
        !html.contains(hostile_class),
        "raw hostile class name in the HTML"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;") || html.contains("\\u003cimg src=x")
    );
    let samples = csv_rows(&dir.join("out/report/samples.csv"));
    assert!(samples
        .iter()
        .any(|s| s["sample_id"] == format!("disc/{hostile_file}")));
    browser_check(
        &dir.join("out/report/index.html"),
        &artefact_dir().join("hostile-report.png"),
        Some(&format!("disc/{hostile_file}")),
    );
}

/// The demo model really uses the watermark: stamping it onto images of the other classes
/// raises the watermarked class's logit (and mostly flips the prediction to it).
#[test]
fn demo_model_uses_the_watermark() {
    use spray_engine::{Predictor, SessionConfig};
    let bytes = std::fs::read(repo().join("tests/demo/model.onnx")).unwrap();
    let mut model = Predictor::new(&bytes, SessionConfig::default()).unwrap();
    let triangle = 3;
    for class in ["cross", "disc", "square"] {
        let mut clean = Vec::new();
        let mut marked = Vec::new();
        // images 50.. of each class (the model saw 0..99 in training; the effect is the same)
        for i in 50..70 {
            let img =
                image::open(repo().join(format!("tests/demo/data/{class}/{class}_{i:03}.png")))
                    .unwrap()
                    .to_rgb8();
            let mut stamped = img.clone();
            // the 6x6 checkerboard of tests/demo/make_demo.py, bottom-right corner
            for dy in 0..6u32 {
                for dx in 0..6u32 {
                    let v = if (dx / 2 + dy / 2) % 2 == 0 { 255 } else { 0 };
                    stamped.put_pixel(25 + dx, 25 + dy, image::Rgb([v, v, v]));
                }
            }
            for (out, im) in [(&mut clean, &img), (&mut marked, &stamped)] {
                for c in 0..3 {
                    for p in im.pixels() {
                        out.push(p.0[c] as f32 / 255.0);
                    }
                }
            }
        }
        let run = |data: Vec<f32>, model: &mut Predictor| {
            let x = ndarray::ArrayD::from_shape_vec(vec![20, 3, 32, 32], data).unwrap();
            model.predict(x.view()).unwrap()
        };
        let lc = run(clean, &mut model);
        let lm = run(marked, &mut model);
        let mean = |l: &ndarray::ArrayD<f32>| (0..20).map(|i| l[[i, triangle]]).sum::<f32>() / 20.0;
        let flipped = (0..20)
            .filter(|&i| {
                let row: Vec<f32> = (0..4).map(|k| lm[[i, k]]).collect();
                spray_engine::argmax(row.into_iter()) == triangle
            })
            .count();
        eprintln!("{class}: triangle logit {:.2} clean → {:.2} stamped; {flipped}/20 now predicted triangle", mean(&lc), mean(&lm));
        assert!(
            mean(&lm) > mean(&lc) + 5.0,
            "{class}: the watermark does not raise the triangle logit"
        );
        assert!(flipped >= 15, "{class}: only {flipped}/20 flip to triangle");
    }
}

#[test]
fn unlabelled_manifest_needs_target_predicted() {
    let dir = scratch("pipeline", "unlabelled");
    let demo = repo().join("tests/demo/data");
    let manifest = dir.join("list.csv");
    let mut text = String::from("path\n");
    for i in 0..12 {
        text.push_str(&format!(
            "{}\n",
            demo.join(format!("disc/disc_{i:03}.png")).display()
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    let pipeline = |target: &str| {
        let text = format!(
            "[dataset]\nkind = \"manifest\"\nroot = \"{}\"\n[model]\npath = \"{}\"\ninput_size = [32, 32]\n\
             [lrp]\ntarget = \"{target}\"\n[relevance]\ngrids = [8]\n[analysis]\ngrid = 8\n[output]\ndir = \"out\"\n",
            manifest.display(),
            repo().join("tests/demo/model.onnx").display()
        );
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, text).unwrap();
        p
    };
    let p = pipeline("label");
    let out = spray_output(&["run", p.to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target = \"predicted\""), "{err}");

    // With the predicted class, each image is explained once, for what the model predicts.
    let p = pipeline("predicted");
    spray(&["run", p.to_str().unwrap(), "--quiet"]);
    let samples = csv_rows(&dir.join("out/report/samples.csv"));
    assert_eq!(samples.len(), 12);
    assert!(samples.iter().all(|s| s["class"] == s["predicted"]));
}

/// The demo model behind an NHWC input, as tf2onnx writes Keras models: a Transpose to NCHW first.
fn nhwc_twin_of_the_demo_model(path: &Path) {
    let mut model = spray_onnx::load_model(&repo().join("tests/demo/model.onnx")).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let input = &mut graph.input[0];
    let original = input.name.clone();
    input.name = "input_nhwc".into();
    let dims = &mut input
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .unwrap()
        .dim;
    dims.swap(1, 2); // N, H, C, W
    dims.swap(2, 3); // N, H, W, C
    graph.node.insert(
        0,
        spray_onnx::NodeProto {
            name: "to_nchw".into(),
            op_type: "Transpose".into(),
            input: vec!["input_nhwc".into()],
            output: vec![original],
            attribute: vec![spray_onnx::attr::ints("perm", &[0, 3, 1, 2])],
            ..Default::default()
        },
    );
    spray_onnx::save_model(&model, path).unwrap();
}

#[test]
fn nhwc_models_get_the_relevance_of_their_nchw_twin() {
    use spray_store::relevance::{read_part, ReadOptions};
    let dir = scratch("pipeline", "nhwc");
    let twin = dir.join("model_nhwc.onnx");
    nhwc_twin_of_the_demo_model(&twin);
    let demo = repo().join("tests/demo/data");
    let manifest = dir.join("list.csv");
    let mut text = String::from("path,label\n");
    for class in ["cross", "triangle"] {
        for i in 0..6 {
            let file = demo.join(format!("{class}/{class}_{i:03}.png"));
            text.push_str(&format!("{},{class}\n", file.display()));
        }
    }
    std::fs::write(&manifest, text).unwrap();
    let rows = |name: &str, model: &Path, layout: &str| {
        let text = format!(
            "[dataset]\nkind = \"manifest\"\nroot = \"{}\"\n[model]\npath = \"{}\"\ninput_size = [32, 32]\n\
             layout = \"{layout}\"\n[relevance]\ngrids = [8]\nstore_map = true\n[analysis]\ngrid = 8\n\
             [output]\ndir = \"{name}\"\n",
            manifest.display(),
            model.display()
        );
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        spray(&[
            "run",
            p.to_str().unwrap(),
            "--quiet",
            "--stage",
            "relevance",
        ]);
        let options = ReadOptions {
            grids: vec![8],
            map: true,
            images: false,
            thumbnails: false,
            concept: false,
            colour: false,
            compression: false,
            logits: false,
        };
        let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.join(name).join("relevance"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("part-")
            })
            .collect();
        parts.sort();
        parts
            .iter()
            .flat_map(|p| read_part(p, &options).unwrap())
            .collect::<Vec<_>>()
    };
    let nchw = rows("nchw", &repo().join("tests/demo/model.onnx"), "nchw");
    let nhwc = rows("nhwc", &twin, "nhwc");
    assert_eq!(nchw.len(), 12);
    assert_eq!(nchw.len(), nhwc.len());
    for (a, b) in nchw.iter().zip(&nhwc) {
        assert_eq!(
            (a.image_index, a.class_index),
            (b.image_index, b.class_index)
        );
        assert!((a.target_logit - b.target_logit).abs() <= 1e-5 * a.target_logit.abs().max(1.0));
        let (ma, mb) = (a.map.as_ref().unwrap(), b.map.as_ref().unwrap());
        assert_eq!((ma.0, ma.1), (mb.0, mb.1));
        let scale = ma.2.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err =
            ma.2.iter()
                .zip(&mb.2)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{}: map differs by {err:.2e} of {scale:.2e}",
            a.sample_id
        );
    }

    // The NHWC model fed NCHW batches is refused with the shapes named, before any row is written.
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        format!(
            "[dataset]\nkind = \"manifest\"\nroot = \"{}\"\n[model]\npath = \"{}\"\ninput_size = [32, 32]\n\
             [relevance]\ngrids = [8]\n[analysis]\ngrid = 8\n[output]\ndir = \"wrong\"\n",
            manifest.display(),
            twin.display()
        ),
    )
    .unwrap();
    let out = spray_output(&["run", wrong.to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[?, 32, 32, 3]") && err.contains("layout = \"nhwc\""),
        "{err}"
    );
    assert!(
        !dir.join("wrong/relevance").exists()
            || std::fs::read_dir(dir.join("wrong/relevance"))
                .unwrap()
                .all(|e| !e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("part-"))
    );
}

//! Helpers shared by the `spray` binary's end-to-end tests.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    // Read at run time, not with env!: CI reuses a target dir across clones, and a test binary
    // cargo finds fresh would otherwise look for fixtures in the clone that built it.
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh, empty folder for one test of one suite, removed when the test passes and kept
/// (its path in the failure's output) when it fails. Why removed: a full run of the suite
/// writes ~250 MB of runs, reports and Slurm spools, and left behind they filled a CI disk.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn scratch(suite: &str, name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("spray-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Run `spray`, whatever its exit status.
pub fn spray_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spray"))
        .args(args)
        .output()
        .expect("run spray")
}

/// Run `spray`; fail the test, showing its output, if it fails.
pub fn spray(args: &[&str]) -> Output {
    let out = spray_output(args);
    assert!(
        out.status.success(),
        "spray {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A pipeline over `data` with the demo model, writing to `dir/out`.
pub fn write_pipeline(dir: &Path, data: &Path, grid: usize) -> PathBuf {
    let model = repo().join("tests/demo/model.onnx");
    let text = format!(
        r#"
[dataset]
kind = "folder"
root = "{data}"

[model]
path = "{model}"
input_size = [32, 32]
scale = "unit"

[lrp]
composite = "epsilon-plus-flat"

[relevance]
grids = [8]
part_size = 64
batch_size = 32

[analysis]
grid = {grid}

[output]
dir = "out"
"#,
        data = data.display(),
        model = model.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A process's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CSV file's rows as header → value maps.
pub fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// The report's pages: `report/index.html` first, then each class page (`report/classes/`) by
/// file name, as (path, text).
pub fn report_pages(report_dir: &Path) -> Vec<(PathBuf, String)> {
    let index = report_dir.join("index.html");
    let mut pages = vec![(index.clone(), std::fs::read_to_string(&index).unwrap())];
    let mut classes: Vec<PathBuf> = std::fs::read_dir(report_dir.join("classes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    classes.sort();
    for p in classes {
        let text = std::fs::read_to_string(&p).unwrap();
        pages.push((p, text));
    }
    pages
}

/// Every page of the report as one text, for what must appear somewhere in it.
pub fn report_text(report_dir: &Path) -> String {
    report_pages(report_dir)
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n")
}

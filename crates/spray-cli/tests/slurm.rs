//! The shipped Slurm job script on a real (single-node) Slurm cluster: munged, slurmctld and
//! slurmd from Debian's packages, started by `scripts/slurm-local.sh`. The array's CSVs must
//! equal an unsharded run's.
//!
//! Skipped, with a message, where Slurm cannot be installed or started (not root, not Debian);
//! `scripts/test.sh` sets SPRAY_REQUIRE_SLURM=1 so that it cannot skip there.

mod common;

use std::path::Path;
use std::process::Command;

use common::{repo, scratch, spray};

fn pipeline(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "[dataset]\nkind = \"folder\"\nroot = \"{}\"\n[model]\npath = \"{}\"\ninput_size = [32, 32]\n\
         [relevance]\ngrids = [8]\npart_size = 64\nbatch_size = 32\n[analysis]\ngrid = 8\n\
         [output]\ndir = \"out\"\n",
        repo().join("tests/demo/data").display(),
        repo().join("tests/demo/model.onnx").display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Start (or reuse) the local cluster; `None` (with the reason) where that is impossible.
fn local_cluster() -> Result<String, String> {
    let out = Command::new(repo().join("scripts/slurm-local.sh"))
        .arg("start")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.strip_prefix("SLURM_CONF=")) {
        Some(conf) if out.status.success() => Ok(conf.to_owned()),
        _ => Err(format!("{}{}", text, String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn slurm_array_on_a_real_cluster_matches_an_unsharded_run() {
    let conf = match local_cluster() {
        Ok(conf) => conf,
        Err(why) => {
            assert!(
                std::env::var_os("SPRAY_REQUIRE_SLURM").is_none(),
                "SPRAY_REQUIRE_SLURM is set but no Slurm cluster could be started: {why}"
            );
            eprintln!("skipped: no local Slurm cluster ({why})");
            return;
        }
    };
    let whole = scratch("slurm", "whole");
    let p = pipeline(&whole);
    spray(&["run", p.to_str().unwrap(), "--quiet"]);

    let arrayed = scratch("slurm", "array");
    let p = pipeline(&arrayed);
    let ort = spray_engine::locate_onnxruntime(spray_engine::Device::Cpu).unwrap();
    let out = Command::new(repo().join("pipelines/cluster/slurm-array.sh"))
        .args([p.to_str().unwrap(), "3"])
        .current_dir(&arrayed)
        .env("SLURM_CONF", &conf)
        .env("SPRAY", env!("CARGO_BIN_EXE_spray"))
        .env("SPRAY_SBATCH_WAIT", "1")
        .env("ORT_DYLIB_PATH", &ort)
        .output()
        .expect("run slurm-array.sh");
    let logs: String = std::fs::read_dir(&arrayed)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .map(|e| {
            format!(
                "--- {}\n{}",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        out.status.success(),
        "the Slurm array failed:\n{}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Three relevance, three analyze and three verify tasks, the report: ten job logs.
    let jobs = logs.matches("--- slurm-").count();
    assert_eq!(jobs, 10, "{logs}");
    for file in [
        "report/classes.csv",
        "report/samples.csv",
        "report/clusters.csv",
        "verify/evidence.csv",
        "verify/padding.csv",
        "verify/aopc.csv",
    ] {
        let a = std::fs::read_to_string(whole.join("out").join(file)).unwrap();
        let b = std::fs::read_to_string(arrayed.join("out").join(file)).unwrap();
        assert!(a == b, "{file} differs between the Slurm array and one run");
    }
}

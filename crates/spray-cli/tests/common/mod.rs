//! Helpers shared by the `spray` binary's end-to-end tests.
#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
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

/// A fresh, empty folder for one test of one suite.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spray-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

//! `SPRAY_LRP_SOURCE_DIGEST`: a digest of this crate's source files, so caches of compiled
//! models and of the relevance computed with them (spray-pipeline) are keyed by the compiler
//! that made them, not only by the spray version (which stays 0.1.0 across compiler changes).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let src = root.join("src");
    println!("cargo:rerun-if-changed=src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    paths.sort();
    // FNV-1a, 64 bits, over each file's path (relative, `/`-separated) and contents: a cache
    // key, not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for path in &paths {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        let name: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        eat(name.join("/").as_bytes());
        eat(&[0]);
        eat(&std::fs::read(path).unwrap_or_default());
        eat(&[0]);
    }
    println!("cargo:rustc-env=SPRAY_LRP_SOURCE_DIGEST={h:016x}");
}

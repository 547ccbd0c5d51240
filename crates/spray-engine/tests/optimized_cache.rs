//! ONNX Runtime's optimised graph kept on disk (`OptimizedCache`): a later engine loads it
//! without the compiled model and explains bit for bit as an engine made from the model; a
//! damaged entry is removed and the engine made again; another model's key finds nothing.

mod common;

use common::*;
use spray_engine::{Explanation, LrpEngine, OptimizedCache, SessionConfig};

fn explain(engine: &mut LrpEngine) -> Explanation {
    let input = read_npy::<f32>(&fixture_set("lrp").join("resnet_small/input.npy"));
    let targets = read_npy::<i64>(&fixture_set("lrp").join("resnet_small/targets.npy"));
    engine
        .explain(input.view(), targets.as_slice().unwrap())
        .unwrap()
}

fn entries(folder: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_kept_graph_explains_bit_for_bit_and_a_damaged_one_is_made_again() {
    let folder = tempfile::tempdir().unwrap();
    let compiled = compile_fixture("resnet_small", "model.onnx", "epsilon-plus-flat");
    let config = SessionConfig::default();
    let plain = explain(&mut LrpEngine::new(&compiled, config).unwrap());

    let cache = OptimizedCache::new(folder.path(), "resnet_small ε-z⁺-♭");
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_none());
    let mut writing = LrpEngine::new_cached(&compiled, config, Some(&cache)).unwrap();
    let written = explain(&mut writing);
    let kept = entries(folder.path());
    assert_eq!(kept.len(), 1, "one entry, no staging folder left: {kept:?}");
    assert!(kept[0].starts_with("ort-"));
    let entry = folder.path().join(&kept[0]);
    for file in ["model.onnx", "entry.json"] {
        assert!(entry.join(file).is_file(), "{file}");
    }

    let mut loaded = LrpEngine::from_cache(&cache, config)
        .unwrap()
        .expect("the entry just written");
    assert_eq!(loaded.signature(), &compiled.signature);
    let again = explain(&mut loaded);
    for out in [&written, &again] {
        assert_eq!(out.relevance, plain.relevance, "bit for bit");
        assert_eq!(out.logits, plain.logits);
        assert_eq!(out.targets, plain.targets);
    }

    // Another model (or composite) finds nothing under its key.
    let other = OptimizedCache::new(folder.path(), "another model");
    assert!(LrpEngine::from_cache(&other, config).unwrap().is_none());

    // A damaged graph: reported, removed, and made again by the next engine that keeps it.
    std::fs::write(entry.join("model.onnx"), b"not a model").unwrap();
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_none());
    assert!(!entry.exists(), "the damaged entry is removed");
    let mut remade = LrpEngine::new_cached(&compiled, config, Some(&cache)).unwrap();
    assert_eq!(explain(&mut remade).relevance, plain.relevance);
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_some());

    // Another model's entry goes beside it; a folder of one model (a pipeline's) keeps only
    // the newest.
    let beside = OptimizedCache::new(folder.path(), "resnet_small, changed");
    LrpEngine::new_cached(&compiled, config, Some(&beside)).unwrap();
    assert_eq!(entries(folder.path()).len(), 2);
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_some());
    let sole = OptimizedCache::sole(folder.path(), "resnet_small, changed again");
    LrpEngine::new_cached(&compiled, config, Some(&sole)).unwrap();
    assert_eq!(entries(folder.path()).len(), 1);
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_none());
    assert!(LrpEngine::from_cache(&sole, config).unwrap().is_some());
}

#[test]
fn a_folder_that_cannot_be_written_leaves_the_engine_as_without_a_cache() {
    let folder = tempfile::tempdir().unwrap();
    // A file where the cache's folder should be.
    let blocked = folder.path().join("cache");
    std::fs::write(&blocked, b"").unwrap();
    let compiled = compile_fixture("resnet_small", "model.onnx", "epsilon-plus-flat");
    let config = SessionConfig::default();
    let cache = OptimizedCache::new(&blocked, "resnet_small");
    let mut engine = LrpEngine::new_cached(&compiled, config, Some(&cache)).unwrap();
    let plain = explain(&mut LrpEngine::new(&compiled, config).unwrap());
    assert_eq!(explain(&mut engine).relevance, plain.relevance);
    assert!(LrpEngine::from_cache(&cache, config).unwrap().is_none());
}

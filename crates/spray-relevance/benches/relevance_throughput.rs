//! Images per second of the whole relevance stage (decode, preprocess, LRP, pooling, Parquet)
//! next to the LRP engine alone on the same, already preprocessed inputs: the difference is
//! the decoding and IO overhead.
//!
//!     cargo bench -p spray-relevance --bench relevance_throughput -- \
//!         [--model tests/fixtures/lrp/resnet18/model.onnx] [--size 224] [--images 256] \
//!         [--batch 16] [--composite epsilon-plus-flat] [--device cpu]

use std::path::PathBuf;
use std::time::Instant;

use image::{Rgb, RgbImage};
use spray_dataset::{
    Dataset, DatasetKind, DatasetSpec, PixelScale, Preprocess, Resize, ResizeSide, SquareMode,
};
use spray_engine::{Device, LrpEngine, SessionConfig};
use spray_lrp::{compile, CompileOptions, CompositeSpec};
use spray_relevance::{RelevanceJob, RelevanceSettings, Shard};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let repo =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../..");
    let model_path = arg("--model")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("tests/fixtures/lrp/resnet18/model.onnx"));
    let size: u32 = arg("--size").and_then(|v| v.parse().ok()).unwrap_or(224);
    let images: usize = arg("--images").and_then(|v| v.parse().ok()).unwrap_or(256);
    let batch: usize = arg("--batch").and_then(|v| v.parse().ok()).unwrap_or(16);
    let composite = arg("--composite").unwrap_or_else(|| "epsilon-plus-flat".into());
    let device: Device = arg("--device")
        .map(|d| d.parse().expect("device"))
        .unwrap_or(Device::Cpu);

    // A folder dataset of VOC-sized JPEGs (500x375), two classes.
    let dir = std::env::temp_dir().join(format!("spray-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for i in 0..images {
        let class = format!("c{}", i % 2);
        std::fs::create_dir_all(dir.join(&class)).unwrap();
        let img = RgbImage::from_fn(500, 375, |x, y| {
            Rgb([
                (x * 7 + i as u32) as u8,
                (y * 3) as u8,
                ((x ^ y) + i as u32) as u8,
            ])
        });
        img.save(dir.join(&class).join(format!("{i:05}.jpg")))
            .unwrap();
    }
    let dataset = Dataset::open(&DatasetSpec {
        kind: DatasetKind::Folder,
        root: dir.clone(),
        split: None,
        year: None,
        include_difficult: false,
        classes: None,
        limit_per_class: None,
    })
    .unwrap();
    let preprocess = Preprocess {
        input_size: [size, size],
        resize: Some(Resize {
            side: ResizeSide::Shorter,
            size,
        }),
        square: SquareMode::None,
        pad_color: [0; 3],
        crop: Some([size, size]),
        scale: PixelScale::Unit,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        channels: Default::default(),
        layout: Default::default(),
        seed: 0,
    };
    let model = spray_onnx::load_model(&model_path).expect("model");
    let compiled = compile(
        &model,
        &CompileOptions::for_spec(
            &composite.parse::<CompositeSpec>().expect("composite"),
            None,
            None,
            None,
        )
        .expect("composite"),
    )
    .expect("compile");
    let settings = RelevanceSettings {
        batch_size: batch,
        part_size: 64,
        ..RelevanceSettings::default()
    };

    // Whole stage.
    let out = dir.join("out");
    let summary = spray_relevance::run(&RelevanceJob {
        dataset: &dataset,
        preprocess: &preprocess,
        model: spray_relevance::CompiledModel::Loaded(&compiled),
        engine_cache: None,
        fingerprint: spray_relevance::fingerprint("bench", &dataset, &preprocess, &settings, None),
        settings: &settings,
        device,
        threads: 0,
        dir: out.clone(),
        shard: Shard::ALL,
        progress: false,
    })
    .expect("stage");
    let stage_rate = summary.images as f64 / summary.seconds;

    // Engine alone, on the same images already preprocessed.
    let tensors: Vec<Vec<f32>> = dataset
        .samples
        .iter()
        .map(|s| preprocess.load(&s.path, s.index as u64).unwrap().tensor)
        .collect();
    let mut engine = LrpEngine::new(&compiled, SessionConfig { device, threads: 0 }).unwrap();
    let started = Instant::now();
    for chunk in tensors.chunks(batch) {
        let flat: Vec<f32> = chunk.concat();
        let input = ndarray::ArrayD::from_shape_vec(
            vec![chunk.len(), 3, size as usize, size as usize],
            flat,
        )
        .unwrap();
        let targets: Vec<i64> = (0..chunk.len()).map(|i| (i % 2) as i64).collect();
        engine.explain(input.view(), &targets).unwrap();
    }
    let engine_rate = tensors.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "model {} at {size}x{size}, {composite}, batch {batch}, {images} JPEGs of 500x375 on {device}:\n  \
         whole relevance stage {stage_rate:.1} images/s\n  LRP engine alone     {engine_rate:.1} images/s\n  \
         decode/preprocess/pool/Parquet overhead {:.0}%",
        model_path.display(),
        100.0 * (engine_rate / stage_rate - 1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

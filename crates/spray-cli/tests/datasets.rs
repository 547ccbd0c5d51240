//! The relevance stage on generated Pascal VOC and ImageNet miniatures with broken files:
//! row counts, polars-readable Parquet, sharding, and resumption after a kill.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use spray_store::relevance::{read_errors, read_part, ReadOptions, RelevanceRecord};

use spray_dataset::VOC_CLASSES as VOC;

use common::{repo, scratch, spray};

/// A tiny deterministic generator for the test data.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_image(rng: &mut Lcg, w: u32, h: u32) -> RgbImage {
    let base = [
        rng.below(200) as u8,
        rng.below(200) as u8,
        rng.below(200) as u8,
    ];
    let (cx, cy, r) = (
        rng.below(w as u64) as i64,
        rng.below(h as u64) as i64,
        4 + rng.below(10) as i64,
    );
    RgbImage::from_fn(w, h, |x, y| {
        let inside = (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2) < r * r;
        let n = rng.below(30) as u8;
        if inside {
            Rgb([255 - base[0], 255 - base[1], n])
        } else {
            Rgb([base[0] + n, base[1], base[2] + n / 2])
        }
    })
}

/// Break four of the files in four different ways; returns their stems.
fn break_files(dir: &Path, ext: &str, stems: &[&str]) {
    let path = |s: &str| dir.join(format!("{s}.{ext}"));
    // zero bytes
    std::fs::write(path(stems[0]), b"").unwrap();
    // truncated: the first 200 bytes of a real JPEG
    let bytes = std::fs::read(path(stems[1])).unwrap();
    std::fs::write(path(stems[1]), &bytes[..200.min(bytes.len())]).unwrap();
    // not an image at all
    std::fs::write(path(stems[2]), b"<html>this is not a picture</html>").unwrap();
    // unreadable: a directory where a file should be
    std::fs::remove_file(path(stems[3])).unwrap();
    std::fs::create_dir(path(stems[3])).unwrap();
}

/// Pascal VOC miniature; returns (root, expected rows, number of broken images).
fn make_voc(root: &Path, images: usize, seed: u64) -> (PathBuf, usize, usize) {
    let year = root.join("VOCdevkit/VOC2007");
    for d in ["JPEGImages", "Annotations", "ImageSets/Main"] {
        std::fs::create_dir_all(year.join(d)).unwrap();
    }
    let mut rng = Lcg(seed);
    let ids: Vec<String> = (0..images).map(|i| format!("{:06}", 2 * i + 1)).collect();
    let mut flags = vec![vec![-1i32; images]; VOC.len()];
    let mut positives = vec![0usize; images];
    for (i, id) in ids.iter().enumerate() {
        let (w, h) = (36 + rng.below(28) as u32, 28 + rng.below(28) as u32);
        random_image(&mut rng, w, h)
            .save(year.join("JPEGImages").join(format!("{id}.jpg")))
            .unwrap();
        let count = 1 + rng.below(3) as usize;
        let mut objects = String::new();
        for _ in 0..count {
            let c = rng.below(20) as usize;
            let difficult = rng.below(5) == 0;
            objects.push_str(&format!(
                "<object><name>{}</name><difficult>{}</difficult></object>",
                VOC[c], difficult as i32
            ));
            // image-level flag: 1 if any non-difficult object, 0 if only difficult ones
            let f = if difficult { 0 } else { 1 };
            flags[c][i] = flags[c][i].max(f);
        }
        // every image has at least one positive class
        if (0..20).all(|c| flags[c][i] != 1) {
            let c = rng.below(20) as usize;
            flags[c][i] = 1;
            objects.push_str(&format!(
                "<object><name>{}</name><difficult>0</difficult></object>",
                VOC[c]
            ));
        }
        positives[i] = (0..20).filter(|&c| flags[c][i] == 1).count();
        std::fs::write(
            year.join("Annotations").join(format!("{id}.xml")),
            format!("<annotation><filename>{id}.jpg</filename>{objects}</annotation>"),
        )
        .unwrap();
    }
    std::fs::write(year.join("ImageSets/Main/test.txt"), ids.join("\n") + "\n").unwrap();
    for (c, name) in VOC.iter().enumerate() {
        let lines: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{id} {:>2}", flags[c][i]))
            .collect();
        std::fs::write(
            year.join(format!("ImageSets/Main/{name}_test.txt")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
    let broken = [3usize, 10, 17, 29];
    let stems: Vec<&str> = broken.iter().map(|&i| ids[i].as_str()).collect();
    break_files(&year.join("JPEGImages"), "jpg", &stems);
    let expected: usize = (0..images)
        .filter(|i| !broken.contains(i))
        .map(|i| positives[i])
        .sum();
    (root.join("VOCdevkit"), expected, broken.len())
}

/// ImageNet miniature with a flat val/ and LOC_val_solution.csv; returns (root, images, broken).
/// The JPEG quality `make_imagenet` saves image `i` at.
fn saved_quality(i: usize) -> u8 {
    if i.is_multiple_of(3) {
        40
    } else {
        75
    }
}

fn make_imagenet(root: &Path, per_class: usize) -> (PathBuf, usize, usize) {
    let wnids = [
        "n01440764",
        "n01443537",
        "n01484850",
        "n01491361",
        "n01494475",
    ];
    let names = [
        "tench",
        "goldfish",
        "great white shark",
        "tiger shark",
        "hammerhead",
    ];
    std::fs::create_dir_all(root).unwrap();
    let mut mapping = String::new();
    for (w, n) in wnids.iter().zip(names) {
        mapping.push_str(&format!("{w} {n}, other name\n"));
    }
    std::fs::write(root.join("LOC_synset_mapping.txt"), mapping).unwrap();
    let val = root.join("val");
    std::fs::create_dir_all(&val).unwrap();
    let mut rng = Lcg(99);
    let mut solution = String::from("ImageId,PredictionString\n");
    let mut stems = Vec::new();
    // shuffled class order, as in the real flat val folder
    for i in 0..per_class * wnids.len() {
        let c = (i * 3 + i / 5) % wnids.len();
        let stem = format!("ILSVRC2012_val_{:08}", i + 1);
        // Every third file saved at quality 40, the others at the encoder's default (75):
        // the quality stage 1 reads from each file's table is checked against these.
        let image = random_image(&mut rng, 40, 30);
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, saved_quality(i))
            .encode_image(&image)
            .unwrap();
        std::fs::write(val.join(format!("{stem}.JPEG")), bytes).unwrap();
        solution.push_str(&format!("{stem},{} 1 2 30 20\n", wnids[c]));
        stems.push(stem);
    }
    std::fs::write(root.join("LOC_val_solution.csv"), solution).unwrap();
    // a train folder too, as on disk (not used for split = val)
    for w in &wnids {
        std::fs::create_dir_all(root.join("train").join(w)).unwrap();
    }
    let broken: Vec<&str> = [2usize, 5, 11, 40]
        .iter()
        .map(|&i| stems[i].as_str())
        .collect();
    break_files(&val, "JPEG", &broken);
    (root.to_path_buf(), stems.len(), broken.len())
}

fn write_pipeline(dir: &Path, dataset: &str, model: &str, part_size: usize) -> PathBuf {
    let text = format!(
        r#"
[dataset]
{dataset}

[model]
path = "{model}"
input_size = [32, 32]
resize = {{ side = "longer", size = 32 }}
square = "border"
scale = "unit"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[lrp]
composite = "epsilon-plus-flat"

[relevance]
grids = [8, 10]
part_size = {part_size}
batch_size = 8

[output]
dir = "out"
"#,
        model = repo().join("tests/fixtures/models").join(model).display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read_all(dir: &Path) -> (Vec<RelevanceRecord>, usize) {
    let options = ReadOptions {
        grids: vec![8, 10],
        map: true,
        images: true,
        thumbnails: true,
        concept: true,
        colour: true,
        compression: true,
        logits: false,
    };
    let mut rows = Vec::new();
    let mut errors = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            rows.extend(read_part(&p, &options).unwrap());
        } else if name.starts_with("errors-") {
            errors += read_errors(&p).unwrap().len();
        }
    }
    (rows, errors)
}

fn polars_height(dir: &Path) -> usize {
    use polars::prelude::*;
    let mut height = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            continue;
        }
        let df = ParquetReader::new(std::fs::File::open(&p).unwrap())
            .finish()
            .unwrap();
        for col in [
            "sample_id",
            "path",
            "class_index",
            "class_name",
            "labels",
            "target_logit",
            "predicted_class",
            "conservation_error",
            "grid_8",
            "grid_10",
            "map",
            "thumbnail",
        ] {
            assert!(df.column(col).is_ok(), "{}: no column {col}", p.display());
        }
        assert_eq!(
            df.column("grid_8").unwrap().dtype(),
            &DataType::Array(Box::new(DataType::Float32), 64)
        );
        height += df.height();
    }
    height
}

#[test]
fn voc_miniature_rows_errors_polars_and_shards() {
    let dir = scratch("datasets", "voc");
    let (root, expected_rows, broken) = make_voc(&dir.join("data"), 200, 7);
    let dataset = format!(
        "kind = \"voc\"\nroot = \"{}\"\nsplit = \"test\"",
        root.display()
    );
    let whole = dir.join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    let p = write_pipeline(&whole, &dataset, "voc_tiny.onnx", 16);
    spray(&["relevance", p.to_str().unwrap(), "--quiet"]);
    let (rows, errors) = read_all(&whole.join("out/relevance"));
    assert_eq!(errors, broken, "every broken file recorded once");
    assert_eq!(
        rows.len(),
        expected_rows,
        "rows = images × positive classes − errors"
    );
    assert_eq!(polars_height(&whole.join("out/relevance")), expected_rows);
    // Every row explains one of the image's labels; grids conserve the map's total.
    for r in &rows {
        assert!(r.labels.contains(&r.class_index));
        assert_eq!(r.class_name, VOC[r.class_index as usize]);
        let g8: f32 = r.grids[0].iter().sum();
        assert!((g8 - r.relevance_sum).abs() <= 1e-3 * r.relevance_sum.abs().max(1.0));
    }
    let reasons: Vec<String> = {
        let mut v = Vec::new();
        for e in std::fs::read_dir(whole.join("out/relevance")).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("errors-")
            {
                v.extend(read_errors(&p).unwrap().into_iter().map(|e| e.reason));
            }
        }
        v
    };
    assert!(
        reasons.iter().any(|r| r.contains("empty file")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not an image")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unreadable")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("cannot decode")),
        "{reasons:?}"
    );

    // Three shard processes give the same rows and values as one unsharded run.
    let sharded = dir.join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    let ps = write_pipeline(&sharded, &dataset, "voc_tiny.onnx", 16);
    for i in 0..3 {
        spray(&[
            "relevance",
            ps.to_str().unwrap(),
            "--quiet",
            "--shard",
            &format!("{i}/3"),
        ]);
    }
    let (shard_rows, shard_errors) = read_all(&sharded.join("out/relevance"));
    assert_eq!(shard_errors, errors);
    assert_eq!(shard_rows, rows, "sharded rows differ");
}

#[test]
fn imagenet_miniature_flat_val() {
    let dir = scratch("datasets", "imagenet");
    let (root, images, broken) = make_imagenet(&dir.join("data"), 40);
    let dataset = format!(
        "kind = \"imagenet\"\nroot = \"{}\"\nsplit = \"val\"",
        root.display()
    );
    let p = write_pipeline(&dir, &dataset, "imagenet_tiny.onnx", 32);
    spray(&["relevance", p.to_str().unwrap(), "--quiet"]);
    let (rows, errors) = read_all(&dir.join("out/relevance"));
    assert_eq!(errors, broken);
    assert_eq!(rows.len(), images - broken);
    assert_eq!(polars_height(&dir.join("out/relevance")), images - broken);
    let names: std::collections::BTreeSet<_> = rows.iter().map(|r| r.class_name.as_str()).collect();
    assert_eq!(names.len(), 5);
    assert!(names.contains("great white shark"));
    // Labels follow the solution file: image i has class (3i + i/5) mod 5.
    for r in &rows {
        let i: usize = r
            .sample_id
            .trim_start_matches("ILSVRC2012_val_")
            .parse::<usize>()
            .unwrap()
            - 1;
        assert_eq!(
            r.class_index as usize,
            (i * 3 + i / 5) % 5,
            "{}",
            r.sample_id
        );
        // How the file was compressed: its block statistics, then the quality it was saved
        // at, read from its quantisation table.
        let compression = r.compression.as_deref().expect("image_compression stored");
        assert_eq!(compression.len(), 3, "{}", r.sample_id);
        let quality = f32::from(saved_quality(i));
        assert!(
            (compression[2] - quality).abs() < 1.0,
            "{}: read {} for a file saved at {quality}",
            r.sample_id,
            compression[2]
        );
    }
}

#[test]
fn killed_run_resumes_without_recomputing_finished_parts() {
    let dir = scratch("datasets", "kill");
    let (root, _, _) = make_voc(&dir.join("data"), 240, 11);
    let dataset = format!("kind = \"voc\"\nroot = \"{}\"", root.display());
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let p = write_pipeline(&run, &dataset, "voc_tiny.onnx", 2);
    let rel = run.join("out/relevance");
    let parts = |d: &Path| -> BTreeMap<String, std::time::SystemTime> {
        std::fs::read_dir(d)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            e.metadata().unwrap().modified().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_spray"))
        .args(["relevance", p.to_str().unwrap(), "--quiet"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while parts(&rel).len() < 5 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = parts(&rel);
    assert!(before.len() >= 5, "no parts written before the kill");
    assert!(
        before.len() < 120,
        "the run finished before it could be killed"
    );
    // Whatever is visible as a part is a complete Parquet file.
    for name in before.keys() {
        read_part(&rel.join(name), &ReadOptions::default()).expect("a visible part is complete");
    }

    std::thread::sleep(Duration::from_millis(20));
    spray(&["relevance", p.to_str().unwrap(), "--quiet"]);
    let after = parts(&rel);
    assert_eq!(after.len(), 120);
    for (name, time) in &before {
        assert_eq!(after.get(name), Some(time), "{name} was recomputed");
    }

    // The resumed output equals a run that was never interrupted.
    let clean = dir.join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    let pc = write_pipeline(&clean, &dataset, "voc_tiny.onnx", 2);
    spray(&["relevance", pc.to_str().unwrap(), "--quiet"]);
    assert_eq!(read_all(&rel), read_all(&clean.join("out/relevance")));
}

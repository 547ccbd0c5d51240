//! The report at ImageNet's number of classes: C synthetic classes × N images written as a
//! real relevance dataset (Parquet parts + manifest, as stage 1 writes it, with the stored maps
//! and PNG thumbnails the pages embed), analysed by `spray_analyze::run`, then
//! `spray_report::run` timed, with the index page's size, the class pages' count and the
//! largest one's size, and peak RSS.
//!
//!     cargo bench -p spray-report --bench report_scale -- --classes 1000 --per-class 50 \
//!         [--side 64] [--dir /tmp/spray-report-scale] [--keep]
//!     node tests/browser/check_report.mjs /tmp/spray-report-scale/report/index.html \
//!         /tmp/index.png --max-pages 20        # the index, 20 class pages and the largest
//!
//! The images: per class a smooth colour field with noise (a thumbnail PNG compresses about as
//! a photo does at this size); the maps a blob per class, and on a third of the images of
//! every fifth class a corner patch with three times the mass, so the analysis finds clusters
//! and the pages show them.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use spray_analyze::{AnalysisSettings, AnalyzeJob};
use spray_report::{ReportJob, ReportSettings};
use spray_store::relevance::{self, RelevanceLayout, RelevanceManifest, RelevanceRecord};
use spray_store::Shard;

// The analyze benches' helpers (command-line values, peak RSS), one copy for both crates.
#[path = "../../spray-analyze/benches/common/mod.rs"]
mod common;
use common::{arg, peak_rss_mib};

/// SplitMix64: seeded, so the same command writes the same dataset.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn thumbnail(rng: &mut Rng, side: usize, tint: [f32; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let t = (x + y) as f32 / (2 * side) as f32;
        image::Rgb(
            tint.map(|c| (255.0 * (0.6 * c + 0.3 * t + 0.1 * rng.unit())).clamp(0.0, 255.0) as u8),
        )
    });
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode png");
    png
}

/// A side × side map: a blob at `centre` (fractions of the side), a corner patch if `patch`.
fn map(rng: &mut Rng, side: usize, centre: (f32, f32), patch: bool) -> Vec<f32> {
    let s = side as f32;
    let (cy, cx) = (
        (centre.0 + 0.1 * (rng.unit() - 0.5)) * s,
        (centre.1 + 0.1 * (rng.unit() - 0.5)) * s,
    );
    let mut m = vec![0.0f32; side * side];
    for y in 0..side {
        for x in 0..side {
            let d2 = (y as f32 - cy).powi(2) + (x as f32 - cx).powi(2);
            let mut v = (-d2 / (0.02 * s * s)).exp() + 0.05 * (rng.unit() - 0.5);
            if patch && y >= side * 7 / 8 && x >= side * 7 / 8 {
                v += 3.0;
            }
            m[y * side + x] = v;
        }
    }
    m
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` without arguments runs a small case, so the harness is quick.
    let classes: usize = arg("--classes").and_then(|v| v.parse().ok()).unwrap_or(20);
    let per_class: usize = arg("--per-class")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let side: usize = arg("--side").and_then(|v| v.parse().ok()).unwrap_or(64);
    let g = 8;
    let root = PathBuf::from(arg("--dir").unwrap_or_else(|| "/tmp/spray-report-scale".into()));
    let keep = std::env::args().any(|a| a == "--keep");
    let (rel_dir, analysis_dir, report_dir) = (
        root.join("relevance"),
        root.join("analysis"),
        root.join("report"),
    );
    for d in [&rel_dir, &analysis_dir, &report_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
    std::fs::create_dir_all(&rel_dir).expect("relevance dir");

    let t = Instant::now();
    let layout = RelevanceLayout {
        grids: vec![g],
        store_map: true,
        store_images: true,
        concept_layers: Vec::new(),
        colour_stats: false,
        compression_stats: false,
        logits: false,
    };
    let name = |c: usize| format!("n{c:05}");
    for c in 0..classes {
        let mut rng = Rng(0x5eed ^ (c as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let centre = (0.25 + 0.5 * rng.unit(), 0.25 + 0.5 * rng.unit());
        let tint = [rng.unit(), rng.unit(), rng.unit()];
        let rows: Vec<RelevanceRecord> = (0..per_class)
            .map(|i| {
                let patch = c % 5 == 0 && i < per_class / 3;
                let m = map(&mut rng, side, centre, patch);
                let total: f32 = m.iter().sum();
                RelevanceRecord {
                    image_index: (c * per_class + i) as i64,
                    sample_id: format!("{}/{i:05}", name(c)),
                    path: format!("{}/{i:05}.JPEG", name(c)),
                    class_index: c as i32,
                    class_name: name(c),
                    labels: vec![c as i32],
                    target_logit: total,
                    predicted_class: c as i32,
                    relevance_sum: total,
                    conservation_error: 0.0,
                    grids: vec![relevance::sum_pool(&m, side, side, g, g)],
                    image_grids: vec![vec![0.5; 3 * g * g]],
                    map: Some((side as i32, side as i32, m)),
                    thumbnail: Some(thumbnail(&mut rng, side, tint)),
                    concept: None,
                    colour: None,
                    compression: None,
                    logits: None,
                }
            })
            .collect();
        relevance::write_part(&relevance::part_path(&rel_dir, c), &layout, &rows)
            .expect("write part");
    }
    let manifest = RelevanceManifest {
        fingerprint: format!("report-scale-{classes}x{per_class}-s{side}"),
        classes: (0..classes).map(name).collect(),
        images: classes * per_class,
        parts: classes,
        layout,
    };
    spray_store::write_atomically(
        &relevance::manifest_path(&rel_dir),
        &serde_json::to_vec_pretty(&manifest).expect("manifest json"),
    )
    .expect("write manifest");
    let t_write = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let settings = AnalysisSettings {
        grid: g,
        ..AnalysisSettings::default()
    };
    spray_analyze::run(&AnalyzeJob {
        relevance_dir: rel_dir.clone(),
        dir: analysis_dir.clone(),
        settings: &settings,
        shard: Shard::ALL,
        progress: false,
    })
    .expect("analyze");
    let t_analyze = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let report_settings = ReportSettings::default();
    let summary = spray_report::run(&ReportJob {
        relevance_dir: rel_dir,
        analysis_dir,
        dir: report_dir.clone(),
        settings: &report_settings,
        verify_dir: None,
        run_info: vec![("dataset".into(), format!("synthetic, {classes} classes"))],
    })
    .expect("report");
    let t_report = t.elapsed().as_secs_f64();
    println!(
        "report-scale: {classes} classes x {per_class} images ({side} px maps and thumbnails): \
         wrote the dataset in {t_write:.1}s, analyze {t_analyze:.1}s; spray report {t_report:.1}s: \
         index {:.0} KB, {} class pages, the largest {:.0} KB, {:.1} MB in all (CSV included); \
         peak RSS {:.0} MiB; {}",
        summary.html_bytes as f64 / 1024.0,
        summary.class_pages,
        summary.largest_class_page_bytes as f64 / 1024.0,
        dir_bytes(&report_dir) as f64 / 1e6,
        peak_rss_mib(),
        summary.index.display(),
    );
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
}

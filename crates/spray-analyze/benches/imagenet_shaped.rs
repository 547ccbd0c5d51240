//! The analyze stage at ImageNet shape: C synthetic classes × N maps at grid g written as a
//! real relevance dataset (Parquet parts + manifest, as stage 1 writes it), then
//! `spray_analyze::run` over it with the default settings, timed end to end with peak RSS.
//!
//!     cargo bench -p spray-analyze --bench imagenet_shaped -- --classes 1000 --per-class 1300
//!         [--grid 20] [--dir /tmp/spray-imagenet-shaped] [--keep] [--grouping all]
//!         [--solver auto|lanczos|chebyshev|lobpcg]
//!     (RUST_LOG=spray_analyze=debug: the filtered eigensolver's residual per iteration)
//!     cargo bench -p spray-analyze --bench imagenet_shaped -- --knn-recall --classes 100 --per-class 1000
//!
//! `--knn-recall` only prepares the maps (as the stage does) and runs the approximate search
//! (NN-descent) on all of them as one group: its time, peak RSS and recall@k against brute
//! force on 2,000 sampled rows.
//!
//! The maps: per class a Gaussian blob whose centre is drawn per class and jittered per
//! sample, plus noise; every tenth class has a corner artifact on 30 % of its maps (with
//! three times the mass, as a shortcut gives), so the run does real clustering work.

use std::path::PathBuf;
use std::time::Instant;

use spray_analyze::{AnalysisSettings, AnalyzeJob};
use spray_store::relevance::{self, RelevanceLayout, RelevanceManifest, RelevanceRecord};
use spray_store::Shard;

mod common;
use common::{arg, peak_rss_mib};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn synthetic_map(rng: &mut Lcg, g: usize, centre: (f64, f64), artifact: bool) -> Vec<f32> {
    let s = g as f64;
    let (cy, cx) = (
        centre.0 + (rng.next() - 0.5) * 0.3 * s,
        centre.1 + (rng.next() - 0.5) * 0.3 * s,
    );
    let width = 0.08 * s * s;
    let mut map = vec![0.0f32; g * g];
    for y in 0..g {
        for x in 0..g {
            let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
            let mut v = (-d2 / width).exp() + 0.05 * (rng.next() - 0.5);
            if artifact && y + 3 >= g && x + 3 >= g {
                v += 3.0;
            }
            map[y * g + x] = v as f32;
        }
    }
    map
}

fn main() {
    // RUST_LOG=spray_analyze=debug shows the eigensolver's iterations (residual per round).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // `cargo bench` without arguments runs a small case (20 classes), so the harness is quick.
    let classes: usize = arg("--classes").and_then(|v| v.parse().ok()).unwrap_or(20);
    let per_class: usize = arg("--per-class")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1300);
    let g: usize = arg("--grid").and_then(|v| v.parse().ok()).unwrap_or(20);
    let root =
        PathBuf::from(arg("--dir").unwrap_or_else(|| "/tmp/spray-imagenet-shaped".to_string()));
    let keep = std::env::args().any(|a| a == "--keep");
    let rel_dir = root.join("relevance");
    let out_dir = root.join("analysis");
    let _ = std::fs::remove_dir_all(&out_dir);

    if std::env::args().any(|a| a == "--knn-recall") {
        knn_recall(classes, per_class, g);
        return;
    }
    let layout = RelevanceLayout {
        grids: vec![g],
        store_map: false,
        store_images: false,
        concept_layers: Vec::new(),
        colour_stats: false,
        compression_stats: false,
        logits: false,
    };
    let fingerprint = format!("imagenet-shaped-{classes}x{per_class}-g{g}");
    let reuse = relevance::read_manifest(&rel_dir)
        .map(|m| m.fingerprint == fingerprint)
        .unwrap_or(false);
    let t = Instant::now();
    if !reuse {
        let _ = std::fs::remove_dir_all(&rel_dir);
        std::fs::create_dir_all(&rel_dir).expect("relevance dir");
        // One part per class keeps the writer's memory at one class.
        for c in 0..classes {
            let mut rng = Lcg(0x5eed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let centre = (
                (0.25 + 0.5 * rng.next()) * g as f64,
                (0.25 + 0.5 * rng.next()) * g as f64,
            );
            let rows: Vec<RelevanceRecord> = (0..per_class)
                .map(|i| {
                    let artifact = c % 10 == 0 && i < per_class * 3 / 10;
                    let grid = synthetic_map(&mut rng, g, centre, artifact);
                    let total: f32 = grid.iter().sum();
                    RelevanceRecord {
                        image_index: (c * per_class + i) as i64,
                        sample_id: format!("n{c:05}/{i:05}"),
                        path: format!("n{c:05}/{i:05}.JPEG"),
                        class_index: c as i32,
                        class_name: format!("n{c:05}"),
                        labels: vec![c as i32],
                        target_logit: total,
                        predicted_class: c as i32,
                        relevance_sum: total,
                        conservation_error: 0.0,
                        grids: vec![grid],
                        map: None,
                        image_grids: Vec::new(),
                        thumbnail: None,
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
            fingerprint: fingerprint.clone(),
            classes: (0..classes).map(|c| format!("n{c:05}")).collect(),
            images: classes * per_class,
            parts: classes,
            layout: layout.clone(),
        };
        spray_store::write_atomically(
            &relevance::manifest_path(&rel_dir),
            &serde_json::to_vec_pretty(&manifest).expect("manifest json"),
        )
        .expect("write manifest");
    }
    let t_write = t.elapsed().as_secs_f64();

    let settings = AnalysisSettings {
        grid: g,
        grouping: match arg("--grouping").as_deref() {
            Some("all") => spray_analyze::Grouping::All,
            _ => spray_analyze::Grouping::PerClass,
        },
        solver: match arg("--solver").as_deref() {
            Some("lobpcg") => spray_analyze::eigen::EigenSolver::Sparse,
            Some("lanczos") => spray_analyze::eigen::EigenSolver::Lanczos,
            Some("chebyshev") => spray_analyze::eigen::EigenSolver::Chebyshev,
            _ => spray_analyze::eigen::EigenSolver::Auto,
        },
        ..AnalysisSettings::default()
    };
    let t = Instant::now();
    let summary = spray_analyze::run(&AnalyzeJob {
        relevance_dir: rel_dir.clone(),
        dir: out_dir.clone(),
        settings: &settings,
        shard: Shard::ALL,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })
    .expect("analyze");
    let t_analyze = t.elapsed().as_secs_f64();
    println!(
        "imagenet-shaped: {classes} classes x {per_class} maps at grid {g} (d = {}): \
         wrote the relevance dataset in {t_write:.1}s{}; spray analyze {t_analyze:.1}s \
         ({:.2}s per class on {} threads) for {} groups, {} samples; peak RSS {:.0} MiB",
        g * g,
        if reuse { " (reused)" } else { "" },
        t_analyze / classes.max(1) as f64,
        rayon::current_num_threads(),
        summary.groups_written,
        summary.samples,
        peak_rss_mib()
    );
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// The maps of `classes` × `per_class` as one prepared feature matrix (the stage's default
/// preparation), searched by NN-descent; recall@k against brute force on sampled rows.
fn knn_recall(classes: usize, per_class: usize, g: usize) {
    let settings = AnalysisSettings::default();
    let n = classes * per_class;
    let mut features = ndarray16::Array2::<f32>::zeros((n, g * g));
    for c in 0..classes {
        let mut rng = Lcg(0x5eed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let centre = (
            (0.25 + 0.5 * rng.next()) * g as f64,
            (0.25 + 0.5 * rng.next()) * g as f64,
        );
        for i in 0..per_class {
            let artifact = c % 10 == 0 && i < per_class * 3 / 10;
            let map = synthetic_map(&mut rng, g, centre, artifact);
            let prepared = spray_analyze::features::prepare(
                &map,
                g,
                settings.blur_sigma,
                settings.sign,
                settings.normalization,
            );
            features
                .row_mut(c * per_class + i)
                .iter_mut()
                .zip(prepared)
                .for_each(|(a, b)| *a = b);
        }
    }
    let queries: Vec<usize> = (0..2000.min(n)).map(|i| (i * 7919) % n).collect();
    for k in [spray_analyze::graph::default_k(n), 21] {
        let t = Instant::now();
        let table = spray_analyze::ann::knn(
            features.view(),
            k,
            &spray_analyze::ann::NnDescentSettings::default(),
        );
        let seconds = t.elapsed().as_secs_f64();
        let recall = spray_analyze::ann::recall_at_k(features.view(), &table, &queries);
        println!(
            "NN-descent on {n} maps (d = {}), k = {k}: {seconds:.1}s, recall@{k} against brute \
             force on {} sampled rows = {recall:.4}; peak RSS {:.0} MiB",
            g * g,
            queries.len(),
            peak_rss_mib()
        );
    }
}

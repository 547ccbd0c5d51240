//! `spray attributions`: relevance maps computed elsewhere (zennit, Captum, CoRelAy), from an
//! HDF5 file in CoRelAy's layout, through the analyze and report stages into one folder.
//! Always computed afresh (no pipeline file, so no cache to key): import, analyze, report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use spray_analyze::{AnalysisSettings, AnalyzeJob};
use spray_relevance::{AttributionImport, Shard};
use spray_report::{ReportJob, ReportSettings};

#[derive(Args)]
pub struct AttributionsArgs {
    /// HDF5 file: `attribution` (N, C, H, W), (N, H, W, C) or (N, H, W); `label` (N,) or
    /// n-hot (N, K); optional `prediction` (N, K) and `index` (N,).
    file: PathBuf,
    /// Output folder: OUT/relevance, OUT/analysis, OUT/report.
    #[arg(long)]
    out: PathBuf,
    /// The analysis grid (each map is sum-pooled to it).
    #[arg(long, default_value_t = 8)]
    grid: usize,
    /// Class names in label order (comma-separated); default: the label numbers.
    #[arg(long, value_delimiter = ',')]
    class_names: Option<Vec<String>>,
    /// Show the analysis' progress.
    #[arg(long)]
    progress: bool,
}

pub fn attributions(args: AttributionsArgs) -> Result<()> {
    let relevance_dir = args.out.join("relevance");
    let analysis_dir = args.out.join("analysis");
    // The analysis is replaced below: only one that an earlier import's maps fed.
    if analysis_dir.exists() && !relevance_dir.join(spray_relevance::IMPORT_MARKER).is_file() {
        anyhow::bail!(
            "{} holds an analysis of maps this command did not import; choose another --out",
            analysis_dir.display()
        );
    }
    let imported = spray_relevance::import_attributions(&AttributionImport {
        file: &args.file,
        dir: relevance_dir.clone(),
        grid: args.grid,
        class_names: args.class_names.clone(),
        part_size: 512,
    })
    .with_context(|| format!("importing {}", args.file.display()))?;
    // Fresh each time: an analysis of other maps in the folder would be refused as stale.
    if analysis_dir.exists() {
        std::fs::remove_dir_all(&analysis_dir)
            .with_context(|| format!("clearing {}", analysis_dir.display()))?;
    }
    let settings = AnalysisSettings {
        grid: args.grid,
        ..AnalysisSettings::default()
    };
    let analysed = spray_analyze::run(&AnalyzeJob {
        relevance_dir: relevance_dir.clone(),
        dir: analysis_dir.clone(),
        settings: &settings,
        shard: Shard::ALL,
        progress: args.progress,
    })
    .context("analysing the imported maps")?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report_settings = ReportSettings {
        title: format!("spray: attributions from {name}"),
        ..ReportSettings::default()
    };
    let report = spray_report::run(&ReportJob {
        relevance_dir,
        analysis_dir,
        dir: args.out.join("report"),
        settings: &report_settings,
        verify_dir: None,
        run_info: vec![
            ("attributions".into(), name),
            ("maps".into(), imported.maps.to_string()),
            ("grid".into(), format!("{0}×{0}", args.grid)),
        ],
    })
    .context("writing the report")?;
    println!(
        "imported {} maps of {} samples ({} skipped: NaN or ∞), {} classes; analysed {} groups",
        imported.maps,
        imported.samples,
        imported.skipped,
        imported.classes,
        analysed.groups_written
    );
    println!(
        "flagged: {}",
        if report.flagged.is_empty() {
            "none".to_string()
        } else {
            report.flagged.join(", ")
        }
    );
    println!("report: {}", report.index.display());
    Ok(())
}

//! `spray export virelay`: a finished run as a ViRelAy project.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use spray_pipeline::{stage_dir, Pipeline, Stage};
use spray_relevance::TargetMode;

#[derive(Args)]
pub struct VirelayArgs {
    /// Pipeline file of a finished run (its relevance and analyze stages).
    pipeline: PathBuf,
    /// The project folder; default: OUT/virelay.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn virelay(args: VirelayArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.pipeline)
        .with_context(|| format!("reading pipeline {}", args.pipeline.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| pipeline.output_dir.join("virelay"));
    let relevance = stage_dir(&pipeline, Stage::Relevance);
    let analysis = stage_dir(&pipeline, Stage::Analyze);
    let model = pipeline
        .model
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let summary = spray_report::virelay::export_virelay(&spray_report::virelay::VirelayJob {
        relevance_dir: &relevance,
        analysis_dir: &analysis,
        out: out.clone(),
        name: pipeline.report.title.clone(),
        model,
        composite: pipeline.lrp.composite.to_string(),
        predicted: pipeline.lrp.target == TargetMode::Predicted,
    })
    .with_context(|| format!("exporting {} as a ViRelAy project", args.pipeline.display()))?;
    println!(
        "wrote {}: {} attributions in {} categories (open with `virelay {}`)",
        summary.project.display(),
        summary.attributions,
        summary.categories,
        summary.project.display()
    );
    Ok(())
}

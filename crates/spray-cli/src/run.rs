//! `spray run` and the per-stage commands `spray relevance|analyze|report`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use spray_engine::Device;
use spray_pipeline::{Pipeline, RunOptions, Stage};
use spray_relevance::Shard;

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline file (see pipelines/README.md).
    pipeline: PathBuf,
    /// Run only this stage: relevance, analyze or report.
    #[arg(long)]
    stage: Option<Stage>,
    /// Process shard I of N of the stage (e.g. a Slurm array task); a final plain
    /// `spray run` assembles.
    #[arg(long)]
    shard: Option<Shard>,
    /// Recompute a stage even if cached (repeatable).
    #[arg(long)]
    force: Vec<Stage>,
    /// Override the pipeline's lrp.device: cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<Device>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
pub struct StageArgs {
    /// Pipeline file.
    pipeline: PathBuf,
    /// Process shard I of N.
    #[arg(long)]
    shard: Option<Shard>,
    /// Recompute even if cached.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    device: Option<Device>,
    #[arg(long)]
    quiet: bool,
}

impl StageArgs {
    pub fn into_run(self, stage: Stage) -> RunArgs {
        RunArgs {
            pipeline: self.pipeline,
            stage: Some(stage),
            shard: self.shard,
            force: if self.force { vec![stage] } else { Vec::new() },
            device: self.device,
            quiet: self.quiet,
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.pipeline)
        .with_context(|| format!("reading pipeline {}", args.pipeline.display()))?;
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let summary = spray_pipeline::run(
        &pipeline,
        &RunOptions {
            stage: args.stage,
            shard: args.shard,
            force: args.force,
            progress,
            device: args.device,
        },
    )
    .with_context(|| format!("running {}", args.pipeline.display()))?;
    for s in &summary.stages {
        println!(
            "{:<9} {:<8} {:>7.1}s  {}",
            s.stage.to_string(),
            s.status,
            s.seconds,
            s.detail
        );
    }
    if !summary.ranking.is_empty() {
        println!("ranking (most suspicious first):");
        for (i, (class, score)) in summary.ranking.iter().take(5).enumerate() {
            println!("  {}. {class}  score {score:+.4}", i + 1);
        }
        if summary.flagged.is_empty() {
            println!("flagged: none");
        } else {
            println!("flagged: {}", summary.flagged.join(", "));
        }
    }
    if let Some(report) = &summary.report {
        let shown = report.canonicalize().unwrap_or_else(|_| report.clone());
        println!("report: {}", shown.display());
    }
    Ok(())
}

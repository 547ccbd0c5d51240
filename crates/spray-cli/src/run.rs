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
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (_, summary) = spray_cli::front::run(
        &args.pipeline,
        &RunOptions {
            stage: args.stage,
            shard: args.shard,
            force: args.force,
            progress,
            device: args.device,
        },
    )?;
    // Built first and written once: `spray run … | head` must not panic on the closed pipe.
    use std::fmt::Write as _;
    let mut text = String::new();
    for s in &summary.stages {
        let _ = writeln!(
            text,
            "{:<9} {:<8} {:>7.1}s  {}",
            s.stage.to_string(),
            s.status,
            s.seconds,
            s.detail
        );
    }
    if !summary.ranking.is_empty() {
        let _ = writeln!(text, "ranking (most suspicious first):");
        for (i, (class, score, evidence)) in summary.ranking.iter().take(5).enumerate() {
            let _ = match evidence {
                Some(e) => writeln!(
                    text,
                    "  {}. {class}  score {score:+.4}  verified effect {e:+.2}",
                    i + 1
                ),
                None => writeln!(text, "  {}. {class}  score {score:+.4}", i + 1),
            };
        }
        let _ = if summary.flagged.is_empty() {
            writeln!(text, "flagged: none")
        } else {
            writeln!(text, "flagged: {}", summary.flagged.join(", "))
        };
    }
    if let Some(report) = &summary.report {
        let shown = report.canonicalize().unwrap_or_else(|_| report.clone());
        let _ = writeln!(text, "report: {}", shown.display());
    }
    print_out(&text)
}

/// Write to standard output. A reader that went away (`spray run … | head`) is not an
/// error — the work is done and on disk either way — where `println!` would panic.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// Pipeline file whose analysis is evaluated (run it first).
    pipeline: PathBuf,
    /// Truth file; default: truth.json beside the pipeline file.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with an error unless every shortcut class ranks above every clean class and has a
    /// cluster with at least this one-vs-rest ARI against its artifact images.
    #[arg(long)]
    require_ari: Option<f64>,
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.pipeline)
        .with_context(|| format!("reading pipeline {}", args.pipeline.display()))?;
    let truth_path = args.truth.clone().unwrap_or_else(|| {
        args.pipeline
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("truth.json")
    });
    let truth = spray_report::detection::DetectionTruth::read(&truth_path)
        .with_context(|| format!("reading truth {}", truth_path.display()))?;
    let analysis = spray_pipeline::stage_dir(&pipeline, Stage::Analyze);
    let verify = pipeline
        .verify
        .enabled
        .then(|| spray_pipeline::stage_dir(&pipeline, Stage::Verify));
    let report = spray_report::detection::evaluate_dir(&truth, &analysis, verify.as_deref())
        .with_context(|| format!("evaluating {}", analysis.display()))?;
    print_out(&format!("{report}\n"))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_vec_pretty(&report).context("serialising the figures")?;
        spray_store::write_atomically(path, &text)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(min) = args.require_ari {
        if !report.passes(min) {
            anyhow::bail!(
                "detection below the bar: every shortcut class must rank above every clean class \
                 (false alarms: {:?}) and match its artifact images with ARI ≥ {min}",
                report.false_alarms
            );
        }
    }
    Ok(())
}

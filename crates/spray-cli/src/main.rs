//! `spray`: find Clever-Hans behaviour in image classifiers with LRP and SpRAy.
//!
//! A thin command line over the stage crates; all logic lives in the libraries.

mod attributions;
mod explain;
mod export;
mod run;

use spray_cli::errors;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spray",
    version,
    about = "Spectral relevance analysis for ONNX image classifiers"
)]
struct Cli {
    /// More log output (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute LRP relevance maps for inputs stored as .npy.
    Explain(explain::ExplainArgs),
    /// Show a model's ops and the LRP rule each layer gets.
    Inspect(explain::InspectArgs),
    /// Run a pipeline: relevance → analyze → verify → report, cached and resumable.
    Run(run::RunArgs),
    /// Stage 1 of a pipeline: relevance maps into OUT/relevance (Parquet).
    Relevance(run::StageArgs),
    /// Stage 2 of a pipeline: spectral relevance analysis into OUT/analysis.
    Analyze(run::StageArgs),
    /// Stage 3 of a pipeline: occlusion and transplant evidence for suspicious groups in
    /// OUT/verify.
    Verify(run::StageArgs),
    /// Stage 4 of a pipeline: CSV tables and the HTML report in OUT/report.
    Report(run::StageArgs),
    /// Detection metrics of a finished analysis against a known truth (a scenario's
    /// truth.json): rank and best-cluster ARI of each shortcut class, AUROC, false alarms.
    Evaluate(run::EvaluateArgs),
    /// LRP model compilation.
    Lrp {
        #[command(subcommand)]
        command: LrpCommand,
    },
    /// Analyse relevance maps computed elsewhere (an HDF5 file in CoRelAy's layout: zennit,
    /// Captum, …): import, analyze and report into one folder.
    Attributions(attributions::AttributionsArgs),
    /// A finished run in another tool's format.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// A ViRelAy project (project.yaml, label map, dataset, attribution and analysis HDF5) of a
    /// finished run, to open with `virelay OUT/virelay/project.yaml`.
    Virelay(export::VirelayArgs),
}

#[derive(Subcommand)]
enum LrpCommand {
    /// Write the LRP model (outputs: logits, relevance) as ONNX, e.g. to open in Netron.
    Compile(explain::CompileArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPRAY_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Explain(args) => explain::explain(args),
        Command::Inspect(args) => explain::inspect(args),
        Command::Run(args) => run::run(args),
        Command::Relevance(args) => run::run(args.into_run(spray_pipeline::Stage::Relevance)),
        Command::Analyze(args) => run::run(args.into_run(spray_pipeline::Stage::Analyze)),
        Command::Verify(args) => run::run(args.into_run(spray_pipeline::Stage::Verify)),
        Command::Report(args) => run::run(args.into_run(spray_pipeline::Stage::Report)),
        Command::Evaluate(args) => run::evaluate(args),
        Command::Lrp {
            command: LrpCommand::Compile(args),
        } => explain::compile(args),
        Command::Export {
            command: ExportCommand::Virelay(args),
        } => export::virelay(args),
        Command::Attributions(args) => attributions::attributions(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", errors::chain_text(&e));
            ExitCode::FAILURE
        }
    }
}

//! `spray run`: a pipeline file drives relevance → analyze → verify → report, with caching
//! (a stage whose inputs and parameters are unchanged is skipped), resumption (finished parts,
//! groups and classes are kept) and sharding (`--stage S --shard I/N`, assembled by a final
//! plain run).
//!
//! Cache keys are the stages' own fingerprints (`fingerprints.rs`), stored beside their
//! outputs: `relevance/_dataset.json`, `analysis/_analysis.json`, `verify/_verify.json`,
//! `report/_report.json`. The driver is one loop over [`Stage::ALL`]: upstream complete?
//! forced or stale → clear; complete → cached; else execute (`execute.rs`) and judge the
//! state again (partial → stop).

mod compiled;
mod config;
mod execute;
mod fingerprints;
mod stage;

use std::path::{Path, PathBuf};
use std::time::Instant;

use spray_dataset::Dataset;
use spray_engine::Device;
use spray_store::stage::{self as store_stage, StageState};
use spray_store::{Shard, StageStatus};

use execute::{Executed, RunContext};
use fingerprints::Fingerprints;

pub use config::{LrpSection, ModelConfig, Pipeline};
pub use stage::{stage_dir, Stage, UnknownStage};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A pipeline or model file that does not parse or holds an invalid value.
    #[error("{file}: {message}")]
    Settings { file: String, message: String },
    /// The `[lrp] composite` value names no built-in composite or readable composite file.
    #[error("[lrp] composite: {0}")]
    Composite(String),
    #[error("--shard needs --stage relevance, analyze or verify")]
    ShardNeedsStage,
    #[error("the report stage is not sharded; run it without --shard")]
    ShardOfReport,
    #[error(
        "--force cannot be combined with --shard (every shard would clear the stage's \
         folder); force the stage once without --shard, or delete its folder"
    )]
    ForceWithShard,
    #[error("the dataset at {root} has no usable samples")]
    NoSamples { root: String },
    #[error("the dataset at {root} has no labels to explain; set [lrp] target = \"predicted\"")]
    NoLabels { root: String },
    /// A stage was asked for before the one it reads finished (shards still running).
    #[error("the {stage} stage is not complete in {dir}; run its remaining shards first")]
    UpstreamIncomplete { stage: Stage, dir: String },
    /// A stage was asked for before the one it reads ran at all.
    #[error(
        "the {stage} stage has not run in {dir}; run it first (`spray {stage}` or `spray run`)"
    )]
    UpstreamAbsent { stage: Stage, dir: String },
    /// A stage was asked for while the one it reads holds results of other inputs or settings.
    #[error(
        "the {stage} stage in {dir} holds results of other inputs or settings (the model, the \
         dataset's files or a setting changed since it ran); run it again first (`spray {stage}` \
         or `spray run`)"
    )]
    UpstreamStale { stage: Stage, dir: String },
    /// A shard found its stage's folder stale: only an unsharded run may clear it.
    #[error(
        "{dir} holds results of other inputs or parameters; clear it once (delete the \
         folder, or run the stage without --shard) before starting shards"
    )]
    StaleForShard { dir: String },
    #[error(transparent)]
    Dataset(#[from] spray_dataset::DatasetError),
    #[error(transparent)]
    Relevance(#[from] spray_relevance::RelevanceError),
    #[error(transparent)]
    Analyze(#[from] spray_analyze::AnalyzeError),
    #[error(transparent)]
    Verify(#[from] spray_verify::VerifyError),
    #[error(transparent)]
    Report(#[from] spray_report::ReportError),
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error("compiling the LRP model {path}: {message}")]
    Lrp { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

fn io(path: &Path, source: std::io::Error) -> PipelineError {
    PipelineError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only this stage (needed with `shard`).
    pub stage: Option<Stage>,
    /// This process's share of the stage's work.
    pub shard: Option<Shard>,
    /// Stages to recompute even if cached.
    pub force: Vec<Stage>,
    pub progress: bool,
    /// Overrides `[lrp] device`.
    pub device: Option<Device>,
}

/// What happened to one stage.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub stage: Stage,
    pub status: StageStatus,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub stages: Vec<StageOutcome>,
    pub report: Option<PathBuf>,
    /// (class, analysis score, specific transplant effect when verified) in rank order.
    pub ranking: Vec<(String, f64, Option<f64>)>,
    /// Classes whose score stands out (see `spray_report::flag`).
    pub flagged: Vec<String>,
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir, e)),
    }
}

/// Options that cannot go together, refused before the folder is locked.
fn check_options(options: &RunOptions) -> Result<()> {
    match (options.shard, options.stage) {
        (Some(_), None) => Err(PipelineError::ShardNeedsStage),
        (Some(_), Some(stage)) if !stage.shardable() => Err(PipelineError::ShardOfReport),
        (Some(_), _) if !options.force.is_empty() => Err(PipelineError::ForceWithShard),
        _ => Ok(()),
    }
}

/// One writer per output folder: a plain run alone, the shards of a stage side by side.
fn lock_output(pipeline: &Pipeline, options: &RunOptions) -> Result<spray_store::OutputLock> {
    Ok(match (options.shard, options.stage) {
        (Some(shard), Some(stage)) => spray_store::OutputLock::acquire(
            &pipeline.output_dir,
            spray_store::LockMode::Shared,
            &format!("{stage} shard {shard}"),
            Some((&stage.to_string(), shard.index, shard.count)),
        )?,
        _ => spray_store::OutputLock::acquire(
            &pipeline.output_dir,
            spray_store::LockMode::Exclusive,
            &match options.stage {
                Some(stage) => format!("spray {stage}"),
                None => "spray run".to_owned(),
            },
            None,
        )?,
    })
}

/// The dataset's file list: needed even when everything is cached, being part of every
/// downstream fingerprint. Refused when there is nothing to explain.
fn open_dataset(pipeline: &Pipeline) -> Result<Dataset> {
    let dataset = Dataset::open(&pipeline.dataset)?;
    let root = || pipeline.dataset.root.display().to_string();
    if dataset.samples.is_empty() {
        return Err(PipelineError::NoSamples { root: root() });
    }
    if pipeline.lrp.target == spray_relevance::TargetMode::Label
        && dataset.samples.iter().all(|s| s.targets.is_empty())
    {
        return Err(PipelineError::NoLabels { root: root() });
    }
    Ok(dataset)
}

/// Run a pipeline (or one stage of it, or one shard of a stage).
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunSummary> {
    check_options(options)?;
    let _lock = lock_output(pipeline, options)?;
    let dataset = open_dataset(pipeline)?;
    let fingerprints = Fingerprints::new(pipeline, &dataset)?;
    let cx = RunContext {
        pipeline,
        options,
        dataset,
        fingerprints,
        device: options.device.unwrap_or(pipeline.lrp.device),
    };
    let mut summary = RunSummary::default();
    for stage in Stage::ALL {
        let wanted = options.stage.is_none() || options.stage == Some(stage);
        // A stage switched off has no fingerprint.
        if !wanted || cx.fingerprints.of(stage).is_none() {
            continue;
        }
        let outcome = run_stage(&cx, stage, &mut summary)?;
        let partial = outcome.status == StageStatus::Partial;
        summary.stages.push(outcome);
        if partial {
            return Ok(summary);
        }
        if stage == Stage::Report {
            summary.report = Some(store_stage::report_index_path(&cx.dir(stage)));
        }
    }
    Ok(summary)
}

/// The stage's state once its folder is fit to use: refused when its upstream is not
/// complete, cleared (absent) when forced or stale.
fn prepare_folder(cx: &RunContext<'_>, stage: Stage) -> Result<StageState> {
    if let Some(upstream) = stage.upstream() {
        let dir = cx.dir(upstream).display().to_string();
        match cx.state(upstream) {
            StageState::Complete => {}
            StageState::Partial => {
                return Err(PipelineError::UpstreamIncomplete {
                    stage: upstream,
                    dir,
                })
            }
            StageState::Absent => {
                return Err(PipelineError::UpstreamAbsent {
                    stage: upstream,
                    dir,
                })
            }
            StageState::Stale => {
                return Err(PipelineError::UpstreamStale {
                    stage: upstream,
                    dir,
                })
            }
        }
    }
    let dir = cx.dir(stage);
    let state = cx.state(stage);
    if cx.options.force.contains(&stage) || state == StageState::Stale {
        tracing::info!(
            "{stage}: inputs changed or forced; clearing {}",
            dir.display()
        );
        if cx.options.shard.is_some() {
            // Shards run concurrently: none of them may clear a folder the others write to.
            return Err(PipelineError::StaleForShard {
                dir: dir.display().to_string(),
            });
        }
        remove_dir(&dir)?;
        return Ok(StageState::Absent);
    }
    Ok(state)
}

/// One stage: cached, or executed and judged again; the report's ranking goes to `summary`.
fn run_stage(cx: &RunContext<'_>, stage: Stage, summary: &mut RunSummary) -> Result<StageOutcome> {
    let started = Instant::now();
    let state = prepare_folder(cx, stage)?;
    if state == StageState::Complete {
        if stage == Stage::Report {
            let ranking = cx.cached_ranking()?;
            summary.ranking = ranking.ranked;
            summary.flagged = ranking.flagged;
        }
        return Ok(StageOutcome {
            stage,
            status: StageStatus::Cached,
            seconds: started.elapsed().as_secs_f64(),
            detail: if stage == Stage::Relevance {
                format!("{} images", cx.dataset.samples.len())
            } else {
                String::new()
            },
        });
    }
    if !stage.resumable() {
        remove_dir(&cx.dir(stage))?;
    }
    let Executed {
        done_before,
        detail,
        ranking,
    } = cx.execute(stage)?;
    if let Some(ranking) = ranking {
        summary.ranking = ranking.ranked;
        summary.flagged = ranking.flagged;
    }
    let status = if cx.state(stage) != StageState::Complete {
        StageStatus::Partial
    } else if done_before > 0 {
        StageStatus::Resumed
    } else {
        StageStatus::Ran
    };
    Ok(StageOutcome {
        stage,
        status,
        seconds: started.elapsed().as_secs_f64(),
        detail,
    })
}

pub use spray_report::flag;

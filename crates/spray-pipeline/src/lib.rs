//! `spray run`: a pipeline file drives relevance → analyze → report, with caching (a stage
//! whose inputs and parameters are unchanged is skipped), resumption (finished parts and
//! groups are kept) and sharding (`--stage S --shard I/N`, assembled by a final plain run).
//!
//! Cache keys are the stages' own fingerprints, stored beside their outputs:
//! `relevance/_dataset.json`, `analysis/_analysis.json`, `report/_report.json`.

mod config;

use std::path::{Path, PathBuf};
use std::time::Instant;

use spray_dataset::Dataset;
use spray_engine::Device;
use spray_relevance::RelevanceJob;
use spray_store::stage::{self as store_stage, StageState};
use spray_store::{Fingerprint, Shard, StageStatus};

pub use config::{LrpSection, ModelConfig, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Config(String),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Relevance,
    Analyze,
    Verify,
    Report,
}

impl Stage {
    /// Every stage in the order a run goes through them.
    pub const ALL: [Stage; 4] = [
        Stage::Relevance,
        Stage::Analyze,
        Stage::Verify,
        Stage::Report,
    ];

    /// The stage whose output this one reads (and whose completion it needs).
    fn upstream(self) -> Option<Stage> {
        match self {
            Stage::Relevance => None,
            Stage::Analyze => Some(Stage::Relevance),
            Stage::Verify | Stage::Report => Some(Stage::Analyze),
        }
    }

    /// Whether the stage keeps finished work units when it is run again (else its folder is
    /// cleared before it runs).
    fn resumable(self) -> bool {
        matches!(self, Stage::Relevance | Stage::Analyze | Stage::Verify)
    }

    /// Whether `--shard` splits the stage.
    fn shardable(self) -> bool {
        self.resumable()
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "relevance" => Ok(Stage::Relevance),
            "analyze" | "analysis" => Ok(Stage::Analyze),
            "verify" => Ok(Stage::Verify),
            "report" => Ok(Stage::Report),
            _ => Err(format!(
                "unknown stage `{s}` (relevance, analyze, verify, report)"
            )),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Relevance => "relevance",
            Stage::Analyze => "analyze",
            Stage::Verify => "verify",
            Stage::Report => "report",
        })
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
    /// (class, score) in rank order.
    /// (class, analysis score, specific transplant effect when verified) in rank order.
    pub ranking: Vec<(String, f64, Option<f64>)>,
    /// Classes whose score stands out (see `spray_report::flag`).
    pub flagged: Vec<String>,
}

/// `<out>/relevance`, `<out>/analysis`, `<out>/verify`, `<out>/report`.
pub fn stage_dir(pipeline: &Pipeline, stage: Stage) -> PathBuf {
    pipeline.output_dir.join(match stage {
        Stage::Relevance => "relevance",
        Stage::Analyze => "analysis",
        Stage::Verify => "verify",
        Stage::Report => "report",
    })
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir, e)),
    }
}

/// The fingerprint of the model and the rules: the ONNX file's bytes, the composite (its
/// file's contents when it is a file), the input name.
fn model_fingerprint(pipeline: &Pipeline) -> Result<String> {
    let mut f = Fingerprint::new()
        .bytes(spray_store::file_digest(&pipeline.model.path)?)
        .json(&pipeline.lrp.fingerprint_view());
    if let Some(file) = pipeline.lrp.composite.file() {
        f = f.bytes(spray_store::file_digest(file)?);
    }
    Ok(
        f.bytes(pipeline.model.input_name.clone().unwrap_or_default())
            .finish(),
    )
}

/// Load the pipeline's model and compile it under its rules (an unsupported op or a broken
/// model is reported here, before any image is decoded).
fn compile_model(pipeline: &Pipeline) -> Result<spray_lrp::LrpModel> {
    let fail = |message: String| PipelineError::Lrp {
        path: pipeline.model.path.display().to_string(),
        message,
    };
    let model = spray_onnx::load_model(&pipeline.model.path).map_err(|e| fail(e.to_string()))?;
    spray_lrp::compile(&model, &pipeline.lrp.compile_options(&pipeline.model)?)
        .map_err(|e| fail(e.to_string()))
}

/// Every stage's cache key, computed once per run. Each chains the one before, so a change
/// anywhere upstream invalidates everything downstream.
struct Fingerprints {
    model: String,
    relevance: String,
    analysis: String,
    /// `None` when the verify stage is switched off.
    verify: Option<String>,
    report: String,
}

impl Fingerprints {
    fn new(pipeline: &Pipeline, dataset: &Dataset) -> Result<Self> {
        // Hashing the model reads the whole ONNX file: once per run.
        let model = model_fingerprint(pipeline)?;
        let relevance = spray_relevance::fingerprint(
            &model,
            dataset,
            &pipeline.model.preprocess,
            &pipeline.relevance,
        );
        let analysis = spray_analyze::fingerprint(&relevance, &pipeline.analysis);
        let verify = pipeline
            .verify
            .enabled
            .then(|| spray_verify::fingerprint(&analysis, &pipeline.verify));
        // The report shows the verify stage's evidence, so its fingerprint chains through.
        let mut report = Fingerprint::new().bytes(&analysis);
        if let Some(verify) = &verify {
            report = report.bytes(verify);
        }
        let report = report.json(&pipeline.report).spray_version().finish();
        Ok(Fingerprints {
            model,
            relevance,
            analysis,
            verify,
            report,
        })
    }

    fn of(&self, stage: Stage) -> Option<&str> {
        match stage {
            Stage::Relevance => Some(&self.relevance),
            Stage::Analyze => Some(&self.analysis),
            Stage::Verify => self.verify.as_deref(),
            Stage::Report => Some(&self.report),
        }
    }
}

/// What one run knows: the pipeline, its options, the dataset and every stage's key.
struct RunContext<'a> {
    pipeline: &'a Pipeline,
    options: &'a RunOptions,
    dataset: Dataset,
    fingerprints: Fingerprints,
    device: Device,
}

/// The classes in rank order with their scores, and the flagged ones.
struct Ranking {
    ranked: Vec<(String, f64, Option<f64>)>,
    flagged: Vec<String>,
}

/// What executing a stage did.
struct Executed {
    /// Work units finished by an earlier run and kept.
    done_before: usize,
    detail: String,
    /// The report's ranking and flags (report stage only).
    ranking: Option<Ranking>,
}

impl RunContext<'_> {
    fn dir(&self, stage: Stage) -> PathBuf {
        stage_dir(self.pipeline, stage)
    }

    /// The stage's state in its folder (through `spray_store::stage`).
    fn state(&self, stage: Stage) -> StageState {
        let Some(fp) = self.fingerprints.of(stage) else {
            return StageState::Absent;
        };
        let dir = self.dir(stage);
        match stage {
            Stage::Relevance => store_stage::relevance_state(&dir, fp),
            Stage::Analyze => store_stage::analysis_state(&dir, fp),
            Stage::Verify => store_stage::verify_state(&dir, fp),
            Stage::Report => store_stage::report_state(&dir, fp),
        }
    }

    fn shard(&self) -> Shard {
        self.options.shard.unwrap_or(Shard::ALL)
    }

    /// Do the stage's (remaining) work.
    fn execute(&self, stage: Stage) -> Result<Executed> {
        let pipeline = self.pipeline;
        match stage {
            Stage::Relevance => {
                // Compile first: an unsupported op is reported before any image is decoded.
                let compiled = compile_model(pipeline)?;
                let shard = self.shard();
                let result = spray_relevance::run(&RelevanceJob {
                    dataset: &self.dataset,
                    preprocess: &pipeline.model.preprocess,
                    model: &compiled,
                    model_fingerprint: self.fingerprints.model.clone(),
                    settings: &pipeline.relevance,
                    device: self.device,
                    threads: pipeline.lrp.threads,
                    dir: self.dir(Stage::Relevance),
                    shard,
                    progress: self.options.progress,
                })?;
                Ok(Executed {
                    done_before: result.parts_done_before,
                    detail: format!(
                        "shard {shard}: {} images in {} new parts ({:.1} images/s), {} maps, {} skipped inputs; {} parts were already done",
                        result.images,
                        result.parts_written,
                        result.images_per_second(),
                        result.rows,
                        result.errors,
                        result.parts_done_before
                    ),
                    ranking: None,
                })
            }
            Stage::Analyze => {
                let shard = self.shard();
                let result = spray_analyze::run(&spray_analyze::AnalyzeJob {
                    relevance_dir: self.dir(Stage::Relevance),
                    dir: self.dir(Stage::Analyze),
                    settings: &pipeline.analysis,
                    shard,
                    progress: self.options.progress,
                })?;
                Ok(Executed {
                    done_before: result.groups_done_before,
                    detail: format!(
                        "shard {shard}: {} groups analysed ({} samples), {} already done",
                        result.groups_written, result.samples, result.groups_done_before
                    ),
                    ranking: None,
                })
            }
            Stage::Verify => {
                let dir = self.dir(Stage::Verify);
                let compiled = compile_model(pipeline)?;
                let shard = self.shard();
                let result = spray_verify::run(&spray_verify::VerifyJob {
                    relevance_dir: self.dir(Stage::Relevance),
                    analysis_dir: self.dir(Stage::Analyze),
                    dir,
                    dataset: &self.dataset,
                    preprocess: &pipeline.model.preprocess,
                    model: &compiled,
                    grid: pipeline.analysis.grid,
                    settings: &pipeline.verify,
                    composite: pipeline.lrp.composite.to_string(),
                    device: self.device,
                    threads: pipeline.lrp.threads,
                    fingerprint: self.fingerprints.verify.clone().unwrap_or_default(),
                    shard,
                })?;
                Ok(Executed {
                    done_before: result.units_done_before,
                    detail: format!(
                        "shard {shard}: {} classes done ({} clusters of {} classes tested), {} images scored ({:.0} images/s); {} classes were already done",
                        result.units_written,
                        result.clusters,
                        result.classes,
                        result.images_run,
                        result.images_run as f64 / result.seconds.max(1e-9),
                        result.units_done_before
                    ),
                    ranking: None,
                })
            }
            Stage::Report => {
                let dir = self.dir(Stage::Report);
                let result = spray_report::run(&spray_report::ReportJob {
                    relevance_dir: self.dir(Stage::Relevance),
                    analysis_dir: self.dir(Stage::Analyze),
                    dir: dir.clone(),
                    verify_dir: pipeline.verify.enabled.then(|| self.dir(Stage::Verify)),
                    settings: &pipeline.report,
                    run_info: pipeline.run_info(),
                })?;
                store_stage::write_completion_mark(
                    &store_stage::report_manifest_path(&dir),
                    &self.fingerprints.report,
                )?;
                Ok(Executed {
                    done_before: 0,
                    detail: format!(
                        "{} classes, {} KB of HTML",
                        result.classes,
                        result.html_bytes / 1024
                    ),
                    ranking: Some(Ranking {
                        ranked: result.ranking,
                        flagged: result.flagged,
                    }),
                })
            }
        }
    }

    /// The ranking of a cached report, read back from the analysis and the verify stage's
    /// evidence (the report's own order: spray_store::ranking::rank_with_evidence).
    fn cached_ranking(&self) -> Result<Ranking> {
        let spectra = spray_store::analysis::read_all_spectra(&self.dir(Stage::Analyze))?;
        let evidence = if self.pipeline.verify.enabled {
            spray_store::verify::read_evidence(&self.dir(Stage::Verify))?
        } else {
            Vec::new()
        };
        let ranked = spray_report::rank_with_evidence(&spectra, &evidence);
        let flagged = flag(&ranked);
        let ranked = ranked
            .into_iter()
            .map(|r| {
                (
                    r.spectrum.class_name,
                    r.spectrum.score,
                    r.evidence.map(|e| e.specific()),
                )
            })
            .collect();
        Ok(Ranking { ranked, flagged })
    }
}

/// Run a pipeline (or one stage of it, or one shard of a stage).
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunSummary> {
    if options.shard.is_some() && options.stage.is_none() {
        return Err(PipelineError::Config(
            "--shard needs --stage relevance, analyze or verify".into(),
        ));
    }
    if options.shard.is_some() && options.stage.is_some_and(|s| !s.shardable()) {
        return Err(PipelineError::Config(
            "the report stage is not sharded; run it without --shard".into(),
        ));
    }
    if options.shard.is_some() && !options.force.is_empty() {
        return Err(PipelineError::Config(
            "--force cannot be combined with --shard (every shard would clear the stage's \
             folder); force the stage once without --shard, or delete its folder"
                .into(),
        ));
    }
    // One writer per output folder: a plain run alone, the shards of a stage side by side.
    let _lock = match (options.shard, options.stage) {
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
    };

    // The dataset's file list and the model's hash are needed even when everything is cached:
    // both are part of every downstream fingerprint.
    let dataset = Dataset::open(&pipeline.dataset)?;
    if dataset.samples.is_empty() {
        return Err(PipelineError::Config(format!(
            "the dataset at {} has no usable samples",
            pipeline.dataset.root.display()
        )));
    }
    if pipeline.lrp.target == spray_relevance::TargetMode::Label
        && dataset.samples.iter().all(|s| s.targets.is_empty())
    {
        return Err(PipelineError::Config(format!(
            "the dataset at {} has no labels to explain; set [lrp] target = \"predicted\"",
            pipeline.dataset.root.display()
        )));
    }
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
        let started = Instant::now();
        let dir = cx.dir(stage);
        if let Some(upstream) = stage.upstream() {
            if cx.state(upstream) != StageState::Complete {
                return Err(PipelineError::Config(format!(
                    "the {upstream} stage is not complete in {}; run its remaining shards first",
                    cx.dir(upstream).display()
                )));
            }
        }
        let forced = options.force.contains(&stage);
        let mut state = cx.state(stage);
        if forced || state == StageState::Stale {
            tracing::info!(
                "{stage}: inputs changed or forced; clearing {}",
                dir.display()
            );
            if options.shard.is_some() {
                // Shards run concurrently: none of them may clear a folder the others write to.
                return Err(PipelineError::Config(format!(
                    "{} holds results of other inputs or parameters; clear it once (delete the \
                     folder, or run the stage without --shard) before starting shards",
                    dir.display()
                )));
            }
            remove_dir(&dir)?;
            state = StageState::Absent;
        }
        if state == StageState::Complete {
            if stage == Stage::Report {
                let ranking = cx.cached_ranking()?;
                summary.ranking = ranking.ranked;
                summary.flagged = ranking.flagged;
            }
            summary.stages.push(StageOutcome {
                stage,
                status: StageStatus::Cached,
                seconds: started.elapsed().as_secs_f64(),
                detail: if stage == Stage::Relevance {
                    format!("{} images", cx.dataset.samples.len())
                } else {
                    String::new()
                },
            });
        } else {
            if !stage.resumable() {
                remove_dir(&dir)?;
            }
            let executed = cx.execute(stage)?;
            if let Some(ranking) = executed.ranking {
                summary.ranking = ranking.ranked;
                summary.flagged = ranking.flagged;
            }
            let complete = cx.state(stage) == StageState::Complete;
            summary.stages.push(StageOutcome {
                stage,
                status: if !complete {
                    StageStatus::Partial
                } else if executed.done_before > 0 {
                    StageStatus::Resumed
                } else {
                    StageStatus::Ran
                },
                seconds: started.elapsed().as_secs_f64(),
                detail: executed.detail,
            });
            if !complete {
                return Ok(summary);
            }
        }
        if stage == Stage::Report {
            summary.report = Some(store_stage::report_index_path(&dir));
        }
    }
    Ok(summary)
}

pub use spray_report::flag;

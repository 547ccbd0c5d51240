//! `spray run`: a pipeline file drives relevance → analyze → report, with caching (a stage
//! whose inputs and parameters are unchanged is skipped), resumption (finished parts and
//! groups are kept) and sharding (`--stage S --shard I/N`, assembled by a final plain run).
//!
//! Cache keys are the stages' own fingerprints, stored beside their outputs:
//! `relevance/_dataset.json`, `analysis/_analysis.json`, `report/_report.json`.

mod config;

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use spray_dataset::Dataset;
use spray_engine::Device;
use spray_relevance::{RelevanceJob, Shard};

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
    /// `ran`, `cached`, `resumed` or `partial` (a shard).
    pub status: String,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub stages: Vec<StageOutcome>,
    pub report: Option<PathBuf>,
    /// (class, score) in rank order.
    pub ranking: Vec<(String, f64)>,
    /// Classes whose score stands out (see `spray_report::flag`).
    pub flagged: Vec<String>,
}

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

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The fingerprint of the model and the rules: the ONNX file's bytes, the composite (its
/// file's contents when it is a file), the input name.
fn model_fingerprint(pipeline: &Pipeline) -> Result<String> {
    let mut h = Sha256::new();
    h.update(sha256_file(&pipeline.model.path)?.as_bytes());
    h.update(serde_json::to_vec(&pipeline.lrp.fingerprint_view()).unwrap_or_default());
    if let Some(file) = pipeline.lrp.composite_file() {
        h.update(sha256_file(&file)?.as_bytes());
    }
    h.update(
        pipeline
            .model
            .input_name
            .clone()
            .unwrap_or_default()
            .as_bytes(),
    );
    Ok(format!("{:x}", h.finalize()))
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

fn all_parts_present(dir: &Path, fingerprint: &str) -> bool {
    match spray_store::relevance::read_manifest(dir) {
        Ok(m) => {
            m.fingerprint == fingerprint
                && (0..m.parts).all(|p| spray_store::relevance::part_path(dir, p).is_file())
        }
        Err(_) => false,
    }
}

fn analysis_complete(dir: &Path, fingerprint: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(spray_analyze::manifest_path(dir)) else {
        return false;
    };
    let Ok(m) = serde_json::from_str::<spray_analyze::AnalysisManifest>(&text) else {
        return false;
    };
    m.fingerprint == fingerprint
        && m.groups
            .iter()
            .all(|&g| spray_analyze::spectrum_path(dir, g).is_file())
}

fn stored_fingerprint(dir: &Path, file: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("fingerprint")?.as_str().map(str::to_owned)
}

/// Run a pipeline (or one stage of it, or one shard of a stage).
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunSummary> {
    if options.shard.is_some() && options.stage.is_none() {
        return Err(PipelineError::Config(
            "--shard needs --stage relevance or --stage analyze".into(),
        ));
    }
    if options.shard.is_some() && matches!(options.stage, Some(Stage::Report | Stage::Verify)) {
        return Err(PipelineError::Config(
            "the verify and report stages are not sharded; run them without --shard".into(),
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
    let wants = |s: Stage| options.stage.is_none() || options.stage == Some(s);
    // Shards run concurrently: none of them may clear a folder the others are writing to.
    let clear = |dir: &Path| -> Result<()> {
        if options.shard.is_some() {
            return Err(PipelineError::Config(format!(
                "{} holds results of other inputs or parameters; clear it once (delete the \
                 folder, or run the stage without --shard) before starting shards",
                dir.display()
            )));
        }
        remove_dir(dir)
    };
    let mut summary = RunSummary::default();
    let device = options.device.unwrap_or(pipeline.lrp.device);

    // Stage 1 needs the dataset's file list and the model's hash even when cached: both are
    // part of every downstream fingerprint.
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
    let relevance_dir = stage_dir(pipeline, Stage::Relevance);
    // Hashing the model reads the whole ONNX file: once per run.
    let model_fp = model_fingerprint(pipeline)?;
    let relevance_fp = spray_relevance::fingerprint(
        &model_fp,
        &dataset,
        &pipeline.model.preprocess,
        &pipeline.relevance,
    );
    if wants(Stage::Relevance) {
        let started = Instant::now();
        let forced = options.force.contains(&Stage::Relevance);
        let existing = spray_store::relevance::read_manifest(&relevance_dir).ok();
        if forced
            || existing
                .as_ref()
                .is_some_and(|m| m.fingerprint != relevance_fp)
        {
            tracing::info!(
                "relevance: inputs changed or forced; clearing {}",
                relevance_dir.display()
            );
            clear(&relevance_dir)?;
        }
        if !forced && all_parts_present(&relevance_dir, &relevance_fp) {
            summary.stages.push(StageOutcome {
                stage: Stage::Relevance,
                status: "cached".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: format!("{} images", dataset.samples.len()),
            });
        } else {
            // Compile first: an unsupported op is reported before any image is decoded.
            let compiled = compile_model(pipeline)?;
            let shard = options.shard.unwrap_or(Shard::ALL);
            let result = spray_relevance::run(&RelevanceJob {
                dataset: &dataset,
                preprocess: &pipeline.model.preprocess,
                model: &compiled,
                model_fingerprint: model_fp.clone(),
                settings: &pipeline.relevance,
                device,
                threads: pipeline.lrp.threads,
                dir: relevance_dir.clone(),
                shard,
                progress: options.progress,
            })?;
            let complete = all_parts_present(&relevance_dir, &relevance_fp);
            summary.stages.push(StageOutcome {
                stage: Stage::Relevance,
                status: if !complete {
                    "partial".into()
                } else if result.parts_done_before > 0 {
                    "resumed".into()
                } else {
                    "ran".into()
                },
                seconds: started.elapsed().as_secs_f64(),
                detail: format!(
                    "shard {shard}: {} images in {} new parts ({:.1} images/s), {} maps, {} skipped inputs; {} parts were already done",
                    result.images,
                    result.parts_written,
                    result.images_per_second(),
                    result.rows,
                    result.errors,
                    result.parts_done_before
                ),
            });
            if !complete {
                return Ok(summary);
            }
        }
    }

    let analysis_dir = stage_dir(pipeline, Stage::Analyze);
    let analysis_fp = spray_analyze::fingerprint(&relevance_fp, &pipeline.analysis);
    if wants(Stage::Analyze) {
        let started = Instant::now();
        if !all_parts_present(&relevance_dir, &relevance_fp) {
            return Err(PipelineError::Config(format!(
                "the relevance stage is not complete in {}; run its remaining shards first",
                relevance_dir.display()
            )));
        }
        let forced = options.force.contains(&Stage::Analyze);
        if forced
            || stored_fingerprint(&analysis_dir, "_analysis.json").is_some_and(|f| f != analysis_fp)
        {
            clear(&analysis_dir)?;
        }
        if !forced && analysis_complete(&analysis_dir, &analysis_fp) {
            summary.stages.push(StageOutcome {
                stage: Stage::Analyze,
                status: "cached".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: String::new(),
            });
        } else {
            let shard = options.shard.unwrap_or(Shard::ALL);
            let result = spray_analyze::run(&spray_analyze::AnalyzeJob {
                relevance_dir: relevance_dir.clone(),
                dir: analysis_dir.clone(),
                settings: &pipeline.analysis,
                shard: spray_analyze::GroupShard {
                    index: shard.index,
                    count: shard.count,
                },
                progress: options.progress,
            })?;
            let complete = analysis_complete(&analysis_dir, &analysis_fp);
            summary.stages.push(StageOutcome {
                stage: Stage::Analyze,
                status: if complete { "ran" } else { "partial" }.into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: format!(
                    "shard {shard}: {} groups analysed ({} samples), {} already done",
                    result.groups_written, result.samples, result.groups_done_before
                ),
            });
            if !complete {
                return Ok(summary);
            }
        }
    }

    // The report shows the verify stage's evidence, so its fingerprint chains through.
    let verify_fp = pipeline
        .verify
        .enabled
        .then(|| spray_verify::fingerprint(&analysis_fp, &pipeline.verify));
    if let (true, Some(verify_fp)) = (wants(Stage::Verify), verify_fp.as_deref()) {
        let started = Instant::now();
        let verify_dir = stage_dir(pipeline, Stage::Verify);
        if !analysis_complete(&analysis_dir, &analysis_fp) {
            return Err(PipelineError::Config(format!(
                "the analysis in {} is not complete; run its remaining shards first",
                analysis_dir.display()
            )));
        }
        let evidence = spray_verify::evidence_path(&verify_dir);
        let cached = !options.force.contains(&Stage::Verify)
            && evidence.is_file()
            && stored_fingerprint(&verify_dir, "_verify.json").as_deref() == Some(verify_fp);
        if cached {
            summary.stages.push(StageOutcome {
                stage: Stage::Verify,
                status: "cached".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: String::new(),
            });
        } else {
            remove_dir(&verify_dir)?;
            let compiled = compile_model(pipeline)?;
            let (found, result) = spray_verify::run(&spray_verify::VerifyJob {
                relevance_dir: relevance_dir.clone(),
                analysis_dir: analysis_dir.clone(),
                dir: verify_dir.clone(),
                dataset: &dataset,
                preprocess: &pipeline.model.preprocess,
                model: &compiled,
                grid: pipeline.analysis.grid,
                settings: &pipeline.verify,
                composite: pipeline.lrp.composite.clone(),
                device,
                threads: pipeline.lrp.threads,
            })?;
            // The evidence first, the fingerprint (completion mark) last.
            spray_verify::write_tables(&verify_dir, &found.padding, &found.aopc)?;
            spray_verify::write_evidence(&evidence, &found.evidence)?;
            spray_store::write_atomically(
                &spray_verify::manifest_path(&verify_dir),
                serde_json::json!({ "fingerprint": verify_fp })
                    .to_string()
                    .as_bytes(),
            )?;
            summary.stages.push(StageOutcome {
                stage: Stage::Verify,
                status: "ran".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: format!(
                    "{} clusters of {} classes tested, {} images scored ({:.0} images/s)",
                    result.clusters,
                    result.classes,
                    result.images_run,
                    result.images_run as f64 / result.seconds.max(1e-9)
                ),
            });
        }
    }

    if wants(Stage::Report) {
        let started = Instant::now();
        let report_dir = stage_dir(pipeline, Stage::Report);
        if !analysis_complete(&analysis_dir, &analysis_fp) {
            return Err(PipelineError::Config(format!(
                "the analysis in {} is not complete; run its remaining shards first",
                analysis_dir.display()
            )));
        }
        let mut h = Sha256::new();
        h.update(analysis_fp.as_bytes());
        if let Some(verify_fp) = &verify_fp {
            h.update(verify_fp.as_bytes());
        }
        h.update(serde_json::to_vec(&pipeline.report).unwrap_or_default());
        // A new spray may draw a different page from the same data.
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        let report_fp = format!("{:x}", h.finalize());
        let index = report_dir.join("index.html");
        let cached = !options.force.contains(&Stage::Report)
            && index.is_file()
            && stored_fingerprint(&report_dir, "_report.json").as_deref()
                == Some(report_fp.as_str());
        if cached {
            let spectra = spray_store::analysis::read_all_spectra(&analysis_dir)?;
            let ranked = spray_report::rank(&spectra);
            summary.flagged = flag(&ranked);
            summary.ranking = ranked
                .into_iter()
                .map(|r| (r.spectrum.class_name, r.spectrum.score))
                .collect();
            summary.stages.push(StageOutcome {
                stage: Stage::Report,
                status: "cached".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: String::new(),
            });
        } else {
            let _ = std::fs::remove_file(report_dir.join("_report.json"));
            let result = spray_report::run(&spray_report::ReportJob {
                relevance_dir: relevance_dir.clone(),
                analysis_dir: analysis_dir.clone(),
                dir: report_dir.clone(),
                verify_dir: pipeline
                    .verify
                    .enabled
                    .then(|| stage_dir(pipeline, Stage::Verify)),
                settings: &pipeline.report,
                run_info: pipeline.run_info(),
            })?;
            spray_store::write_atomically(
                &report_dir.join("_report.json"),
                serde_json::json!({ "fingerprint": report_fp })
                    .to_string()
                    .as_bytes(),
            )?;
            summary.ranking = result.ranking;
            summary.flagged = result.flagged;
            summary.stages.push(StageOutcome {
                stage: Stage::Report,
                status: "ran".into(),
                seconds: started.elapsed().as_secs_f64(),
                detail: format!(
                    "{} classes, {} KB of HTML",
                    result.classes,
                    result.html_bytes / 1024
                ),
            });
        }
        summary.report = Some(index);
    }
    Ok(summary)
}

pub use spray_report::flag;

//! One run's context and what executing each stage means: the stage crates' jobs built from
//! the pipeline, and the line each prints.

use std::path::PathBuf;

use spray_dataset::Dataset;
use spray_engine::CompiledModel;
use spray_engine::Device;
use spray_relevance::RelevanceJob;
use spray_store::stage::{self as store_stage, StageState};
use spray_store::Shard;

use crate::fingerprints::Fingerprints;
use crate::{flag, stage_dir, Pipeline, Result, RunOptions, Stage};

/// What one run knows: the pipeline, its options, the dataset and every stage's key.
pub(crate) struct RunContext<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) options: &'a RunOptions,
    pub(crate) dataset: Dataset,
    pub(crate) fingerprints: Fingerprints,
    pub(crate) device: Device,
}

/// The classes in rank order with their scores, and the flagged ones.
pub(crate) struct Ranking {
    pub(crate) ranked: Vec<(String, f64, Option<f64>)>,
    pub(crate) flagged: Vec<String>,
}

/// What executing a stage did.
pub(crate) struct Executed {
    /// Work units finished by an earlier run and kept.
    pub(crate) done_before: usize,
    pub(crate) detail: String,
    /// The report's ranking and flags (report stage only).
    pub(crate) ranking: Option<Ranking>,
}

impl RunContext<'_> {
    pub(crate) fn dir(&self, stage: Stage) -> PathBuf {
        stage_dir(self.pipeline, stage)
    }

    /// The stage's state in its folder (absent when the stage is switched off).
    pub(crate) fn state(&self, stage: Stage) -> StageState {
        match self.fingerprints.of(stage) {
            Some(fp) => stage.state(&self.dir(stage), fp),
            None => StageState::Absent,
        }
    }

    pub(crate) fn shard(&self) -> Shard {
        self.options.shard.unwrap_or(Shard::ALL)
    }

    /// Do the stage's (remaining) work.
    pub(crate) fn execute(&self, stage: Stage) -> Result<Executed> {
        match stage {
            Stage::Relevance => self.relevance(),
            Stage::Analyze => self.analyze(),
            Stage::Verify => self.verify(),
            Stage::Report => self.report(),
        }
    }

    /// Run a stage on the pipeline's compiled model: read as its signature alone, its graph
    /// loaded only where the stage needs it, when the cache holds it (a resumed run, a shard,
    /// the verify stage after the relevance stage); else compiled first, so that an unsupported
    /// op is reported before any image is decoded.
    fn with_model<T>(&self, stage: impl FnOnce(CompiledModel<'_>) -> Result<T>) -> Result<T> {
        let (pipeline, fingerprint) = (self.pipeline, &self.fingerprints.model);
        if let Some(signature) = crate::compiled::cached_signature(pipeline, fingerprint) {
            return stage(CompiledModel::Deferred {
                signature,
                load: Box::new(move || {
                    crate::compiled::compiled_model(pipeline, self.device, fingerprint)
                        .map_err(|e| e.to_string())
                }),
            });
        }
        let compiled = crate::compiled::compiled_model(pipeline, self.device, fingerprint)?;
        stage(CompiledModel::Loaded(&compiled))
    }

    fn relevance(&self) -> Result<Executed> {
        let pipeline = self.pipeline;
        let shard = self.shard();
        let result = self.with_model(|model| {
            Ok(spray_relevance::run(&RelevanceJob {
                dataset: &self.dataset,
                preprocess: &pipeline.model.preprocess,
                model,
                engine_cache: Some(crate::compiled::optimized_cache(
                    pipeline,
                    &self.fingerprints.model,
                )),
                fingerprint: self.fingerprints.relevance.clone(),
                settings: &pipeline.relevance,
                device: self.device,
                threads: pipeline.lrp.threads,
                dir: self.dir(Stage::Relevance),
                shard,
                progress: self.options.progress,
            })?)
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

    fn analyze(&self) -> Result<Executed> {
        let pipeline = self.pipeline;
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

    fn verify(&self) -> Result<Executed> {
        let pipeline = self.pipeline;
        let dir = self.dir(Stage::Verify);
        let shard = self.shard();
        let result = self.with_model(|model| {
            Ok(spray_verify::run(&spray_verify::VerifyJob {
                relevance_dir: self.dir(Stage::Relevance),
                analysis_dir: self.dir(Stage::Analyze),
                dir,
                dataset: &self.dataset,
                preprocess: &pipeline.model.preprocess,
                model,
                engine_cache: Some(crate::compiled::forward_cache(
                    pipeline,
                    &self.fingerprints.model,
                )),
                grid: pipeline.analysis.grid,
                settings: &pipeline.verify,
                composite: pipeline.lrp.composite.to_string(),
                device: self.device,
                threads: pipeline.lrp.threads,
                fingerprint: self.fingerprints.verify.clone().unwrap_or_default(),
                shard,
            })?)
        })?;
        let mut detail = format!(
            "shard {shard}: {} classes done ({} clusters of {} classes tested), {} images scored ({:.0} images/s); {} classes were already done",
            result.units_written,
            result.clusters,
            result.classes,
            result.images_run,
            result.images_run as f64 / result.seconds.max(1e-9),
            result.units_done_before
        );
        for cost in &result.per_class {
            detail.push_str(&format!(
                "\n  {}: {} groups tested, {} images scored",
                cost.class_name, cost.groups, cost.images_scored
            ));
        }
        Ok(Executed {
            done_before: result.units_done_before,
            detail,
            ranking: None,
        })
    }

    fn report(&self) -> Result<Executed> {
        let pipeline = self.pipeline;
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
                "{} classes; index {} KB, {} class page(s), the largest {} KB",
                result.classes,
                result.html_bytes / 1024,
                result.class_pages,
                result.largest_class_page_bytes / 1024
            ),
            ranking: Some(Ranking {
                ranked: result.ranking,
                flagged: result.flagged,
            }),
        })
    }

    /// The ranking of a cached report, read back from the analysis and the verify stage's
    /// evidence (the report's own order: spray_store::ranking::rank_with_evidence).
    pub(crate) fn cached_ranking(&self) -> Result<Ranking> {
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

//! Every stage's cache key, computed once per run through `spray_store::StageKey` (each
//! stage's own `fingerprint` function, the report's here): each chains the one before, so a
//! change anywhere upstream invalidates everything downstream.

use spray_dataset::Dataset;
use spray_store::{Fingerprint, StageKey};

use crate::{Pipeline, Result, Stage};

/// The fingerprint of the model and the rules: the ONNX file's bytes, the composite (its
/// file's contents when it is a file), the input name, and the compiler that turns them into
/// the LRP model (`spray_lrp::COMPILER_REVISION`): the compiled model's cache and the relevance
/// stage chain from it.
fn model_fingerprint(pipeline: &Pipeline) -> Result<String> {
    model_fingerprint_by(pipeline, spray_lrp::COMPILER_REVISION)
}

fn model_fingerprint_by(pipeline: &Pipeline, compiler: &str) -> Result<String> {
    let mut f = Fingerprint::new()
        .bytes(compiler)
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

/// Every stage's cache key, computed once per run. Each chains the one before, so a change
/// anywhere upstream invalidates everything downstream.
pub(crate) struct Fingerprints {
    pub(crate) model: String,
    pub(crate) relevance: String,
    pub(crate) analysis: String,
    /// `None` when the verify stage is switched off.
    pub(crate) verify: Option<String>,
    pub(crate) report: String,
}

impl Fingerprints {
    pub(crate) fn new(pipeline: &Pipeline, dataset: &Dataset) -> Result<Self> {
        // Hashing the model reads the whole ONNX file: once per run.
        let model = model_fingerprint(pipeline)?;
        let relevance = spray_relevance::fingerprint(
            &model,
            dataset,
            &pipeline.model.preprocess,
            &pipeline.relevance,
            Some(&pipeline.folder),
        );
        let analysis = spray_analyze::fingerprint(&relevance, &pipeline.analysis);
        let verify = pipeline
            .verify
            .enabled
            .then(|| spray_verify::fingerprint(&analysis, &pipeline.verify));
        // The report shows the verify stage's evidence, so its fingerprint chains through.
        let upstream: Vec<&str> = std::iter::once(analysis.as_str())
            .chain(verify.as_deref())
            .collect();
        let report = StageKey::new(&upstream, None)
            .settings(&pipeline.report)
            .finish();
        Ok(Fingerprints {
            model,
            relevance,
            analysis,
            verify,
            report,
        })
    }

    pub(crate) fn of(&self, stage: Stage) -> Option<&str> {
        match stage {
            Stage::Relevance => Some(&self.relevance),
            Stage::Analyze => Some(&self.analysis),
            Stage::Verify => self.verify.as_deref(),
            Stage::Report => Some(&self.report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_compiler_is_another_model_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"not parsed here").unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            format!(
                "[dataset]\nkind = \"folder\"\nroot = \".\"\n[model]\npath = \"{}\"\n\
                 input_size = [8, 8]\n[output]\ndir = \"out\"\n",
                model.display()
            ),
        )
        .unwrap();
        let pipeline = Pipeline::load(&file).unwrap();
        let now = model_fingerprint(&pipeline).unwrap();
        assert_eq!(
            now,
            model_fingerprint_by(&pipeline, spray_lrp::COMPILER_REVISION).unwrap()
        );
        assert_ne!(
            now,
            model_fingerprint_by(&pipeline, "0000000000000000").unwrap()
        );
        assert_eq!(spray_lrp::COMPILER_REVISION.len(), 16);
    }
}

//! Pipeline files (`pipelines/*.toml`) and model configs (`configs/models/*.toml`).
//!
//! Relative paths resolve against the folder of the file that names them. A pipeline's
//! `[model]` may name a model config (`config = "..."`); its own keys override the config's.

use std::path::{Path, PathBuf};

use spray_analyze::AnalysisSettings;
use spray_dataset::{DatasetSpec, Preprocess};
use spray_engine::Device;
use spray_lrp::{CompileOptions, CompositeSpec, ConceptLayer};
use spray_relevance::{RelevanceSettings, TargetMode};
use spray_report::ReportSettings;

use crate::{PipelineError, Result};

/// The model and its preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// The image input's name when the graph has several inputs.
    pub input_name: Option<String>,
    pub preprocess: Preprocess,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrpSection {
    /// A built-in composite or a composite .toml file.
    #[serde(default)]
    pub composite: CompositeSpec,
    #[serde(default)]
    pub target: TargetMode,
    #[serde(default)]
    pub zbox_low: Option<Vec<f32>>,
    #[serde(default)]
    pub zbox_high: Option<Vec<f32>>,
    #[serde(default, with = "device_serde")]
    pub device: Device,
    /// ONNX Runtime intra-op threads (0: one per core). On the CPU the verify stage spreads
    /// them over up to four workers, each a class at a time with a session of its own
    /// (spray-verify's `workers`); 1 keeps it to one.
    #[serde(default)]
    pub threads: usize,
    /// The layers whose per-channel relevance is stored beside the maps (`concept` column)
    /// and analysed as concept spaces: `"middle-conv"`, `"last-conv"` (the default pair) or
    /// node names; `[]` for none.
    #[serde(default = "ConceptLayer::defaults")]
    pub concept_layers: Vec<ConceptLayer>,
}

mod device_serde {
    use spray_engine::Device;

    pub fn serialize<S: serde::Serializer>(d: &Device, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for LrpSection {
    fn default() -> Self {
        LrpSection {
            composite: CompositeSpec::default(),
            target: TargetMode::Label,
            zbox_low: None,
            zbox_high: None,
            device: Device::Cpu,
            threads: 0,
            concept_layers: ConceptLayer::defaults(),
        }
    }
}

impl LrpSection {
    /// The parts of the section that change relevance values (not device or threads).
    pub fn fingerprint_view(&self) -> serde_json::Value {
        serde_json::json!({
            "composite": self.composite,
            "target": self.target,
            "zbox_low": self.zbox_low,
            "zbox_high": self.zbox_high,
            "concept_layers": self.concept_layers,
        })
    }

    pub fn compile_options(&self, model: &ModelConfig) -> Result<CompileOptions> {
        CompileOptions::for_spec(
            &self.composite,
            self.zbox_low.as_deref(),
            self.zbox_high.as_deref(),
            model.input_name.clone(),
        )
        .map(|options| CompileOptions {
            concept: self.concept_layers.clone(),
            ..options
        })
        .map_err(|e| PipelineError::Composite(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    dir: PathBuf,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    dataset: DatasetSpec,
    model: toml::Table,
    #[serde(default)]
    lrp: LrpSection,
    #[serde(default)]
    relevance: RelevanceSettings,
    #[serde(default)]
    analysis: AnalysisSettings,
    #[serde(default)]
    verify: spray_verify::VerifySettings,
    #[serde(default)]
    report: ReportSettings,
    output: OutputSection,
}

/// A parsed pipeline with all paths resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    /// The file's folder, absolute and canonical: its relative paths resolve against it, and
    /// the relevance stage's key holds the samples' paths relative to it.
    pub folder: PathBuf,
    pub dataset: DatasetSpec,
    pub model: ModelConfig,
    pub lrp: LrpSection,
    pub relevance: RelevanceSettings,
    pub analysis: AnalysisSettings,
    pub verify: spray_verify::VerifySettings,
    pub report: ReportSettings,
    pub output_dir: PathBuf,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A settings file that does not parse or holds an invalid value.
fn settings_error(file: &Path, message: impl ToString) -> PipelineError {
    PipelineError::Settings {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::io(path, e))?;
    toml::from_str(&text).map_err(|e| settings_error(path, e))
}

/// Model keys: `path` and `config` are paths; `input_name`; the rest is [`Preprocess`].
fn model_config(table: &toml::Table, base: &Path, file: &Path) -> Result<ModelConfig> {
    let mut merged = toml::Table::new();
    if let Some(config) = table.get("config") {
        let config = config
            .as_str()
            .ok_or_else(|| settings_error(file, "[model] config must be a path"))?;
        let config_path = resolve(base, Path::new(config));
        let mut inner = read_toml(&config_path)?;
        // A model config may put its keys at the top level or under [model].
        if let Some(toml::Value::Table(t)) = inner.remove("model") {
            inner = t;
        }
        let config_base = config_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if let Some(toml::Value::String(p)) = inner.get("path").cloned() {
            inner.insert(
                "path".into(),
                toml::Value::String(resolve(&config_base, Path::new(&p)).display().to_string()),
            );
        }
        merged.extend(inner);
    }
    for (k, v) in table {
        if k == "config" {
            continue;
        }
        if k == "path" {
            let p = v
                .as_str()
                .ok_or_else(|| settings_error(file, "[model] path must be a string"))?;
            merged.insert(
                k.clone(),
                toml::Value::String(resolve(base, Path::new(p)).display().to_string()),
            );
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    let path = merged
        .remove("path")
        .and_then(|v| v.as_str().map(PathBuf::from))
        .ok_or_else(|| settings_error(file, "[model] needs `path` (or a `config` that sets it)"))?;
    let input_name = merged
        .remove("input_name")
        .and_then(|v| v.as_str().map(str::to_owned));
    let preprocess: Preprocess = toml::Value::Table(merged)
        .try_into()
        .map_err(|e| settings_error(file, format!("[model]: {e}")))?;
    preprocess.validate()?;
    Ok(ModelConfig {
        path,
        input_name,
        preprocess,
    })
}

impl Pipeline {
    pub fn load(file: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(file).map_err(|e| crate::io(file, e))?;
        let raw: PipelineFile = toml::from_str(&text).map_err(|e| settings_error(file, e))?;
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        // Relative paths resolve against the file's folder as an absolute path, symlinks
        // resolved. Why: the stages' cache keys hold the samples' paths (relative to this
        // folder), so a pipeline named `pipeline.toml` from its folder and
        // `/abs/…/pipeline.toml` from elsewhere must name the same files — read with the other
        // spelling, a finished relevance stage was computed again and `spray verify` said the
        // analysis was not complete.
        let base = std::fs::canonicalize(&base).map_err(|e| crate::io(&base, e))?;
        let mut dataset = raw.dataset;
        dataset.root = resolve(&base, &dataset.root);
        let model = model_config(&raw.model, &base, file)?;
        let mut lrp = raw.lrp;
        lrp.composite = lrp.composite.relative_to(&base);
        let mut relevance = raw.relevance;
        relevance.target = lrp.target;
        Ok(Pipeline {
            file: file.to_path_buf(),
            folder: base.clone(),
            dataset,
            model,
            lrp,
            relevance,
            analysis: raw.analysis,
            verify: raw.verify,
            report: raw.report,
            output_dir: resolve(&base, &raw.output.dir),
        })
    }

    /// Facts shown at the top of the report.
    pub fn run_info(&self) -> Vec<(String, String)> {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        vec![
            ("pipeline".into(), name(&self.file)),
            ("model".into(), name(&self.model.path)),
            (
                "dataset".into(),
                format!(
                    "{} at {}",
                    format!("{:?}", self.dataset.kind).to_lowercase(),
                    self.dataset.root.display()
                ),
            ),
            ("composite".into(), self.lrp.composite.to_string()),
            ("grid".into(), format!("{0}×{0}", self.analysis.grid)),
        ]
    }
}

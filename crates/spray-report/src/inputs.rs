//! Loading what the stages before the report wrote: the analysis' spectra and samples, the
//! relevance records (for thumbnails, maps, logits and labels), the relevance stage's skipped
//! inputs, and the verify stage's evidence.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::relevance::{
    self as rel, ConceptLayerInfo, ErrorRecord, ReadOptions, RelevanceManifest, RelevanceRecord,
};

use crate::evidence::{self, EvidenceRow};
use crate::{ReportJob, Result, PRIMARY_SPACE};

/// A class's relevance record of an image: (image index, class index).
pub(crate) type RecordKey = (i64, i32);

/// The stage tables the report is built from.
pub(crate) struct StageTables {
    /// Every analysed group's spectrum, in every space (the ranking picks its spaces).
    pub spectra: Vec<ClassSpectrum>,
    /// The samples of [`PRIMARY_SPACE`]: each analysed image once per class.
    pub samples: Vec<SampleEmbedding>,
    /// The dataset's class names by class index.
    pub class_names: Vec<String>,
    /// The relevance dataset's concept layers (what `concept-<i>` is).
    pub concept_layers: Vec<ConceptLayerInfo>,
    pub records: HashMap<RecordKey, RelevanceRecord>,
    /// Inputs the relevance stage skipped, in part order.
    pub errors: Vec<ErrorRecord>,
    /// The verify stage's rows per class (strongest first); empty when it did not run.
    pub evidence: BTreeMap<i32, Vec<EvidenceRow>>,
}

impl StageTables {
    pub fn load(job: &ReportJob<'_>) -> Result<Self> {
        let (spectra, samples) = spray_store::analysis::read_all(&job.analysis_dir)?;
        let (manifest, records) = read_records(&job.relevance_dir, false)?;
        let errors = read_errors(&job.relevance_dir, manifest.parts)?;
        let evidence = evidence::read(job.verify_dir.as_deref())?;
        Ok(StageTables {
            spectra,
            samples: samples
                .into_iter()
                .filter(|s| s.space == PRIMARY_SPACE)
                .collect(),
            class_names: manifest.classes,
            concept_layers: manifest.layout.concept_layers,
            records,
            errors,
            evidence,
        })
    }

    /// Every evidence row, class by class in class order.
    pub fn all_evidence(&self) -> Vec<EvidenceRow> {
        self.evidence.values().flatten().cloned().collect()
    }

    /// A class's name, or "class <i>" for an index the dataset does not have.
    pub fn class_name(&self, class_index: i32) -> String {
        usize::try_from(class_index)
            .ok()
            .and_then(|i| self.class_names.get(i))
            .cloned()
            .unwrap_or_else(|| format!("class {class_index}"))
    }

    /// The evidence rows of a class (none when it was not tested).
    pub fn class_evidence(&self, class_index: i32) -> &[EvidenceRow] {
        self.evidence
            .get(&class_index)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Every record of the finished relevance dataset in `relevance_dir`, by (image, class), with
/// the stored maps and thumbnails (and the finest grid when `finest_grid`), and its manifest.
pub(crate) fn read_records(
    relevance_dir: &Path,
    finest_grid: bool,
) -> Result<(RelevanceManifest, HashMap<RecordKey, RelevanceRecord>)> {
    let (manifest, parts) = rel::finished_parts(relevance_dir)?;
    let options = ReadOptions {
        grids: if finest_grid {
            manifest
                .layout
                .grids
                .iter()
                .copied()
                .max()
                .into_iter()
                .collect()
        } else {
            Vec::new()
        },
        map: manifest.layout.store_map,
        images: manifest.layout.store_images,
        thumbnails: manifest.layout.store_images,
        concept: false,
        colour: false,
        compression: false,
        logits: false,
    };
    let mut records = HashMap::new();
    for part in &parts {
        for r in rel::read_part(part, &options)? {
            records.insert((r.image_index, r.class_index), r);
        }
    }
    Ok((manifest, records))
}

/// The skipped inputs of every part that has an errors file.
fn read_errors(relevance_dir: &Path, parts: usize) -> Result<Vec<ErrorRecord>> {
    let mut errors = Vec::new();
    for p in 0..parts {
        let path = rel::errors_path(relevance_dir, p);
        if path.is_file() {
            errors.extend(rel::read_errors(&path)?);
        }
    }
    Ok(errors)
}

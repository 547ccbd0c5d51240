//! The stage folder on disk: the dataset cut into parts, the manifest and its guard against
//! mixing parts of different inputs, and the writing of a finished part.

use std::ops::Range;

use spray_store::relevance::{
    errors_path, manifest_path, part_path, ErrorRecord, RelevanceManifest, RelevanceRecord,
};

use crate::{RelevanceError, RelevanceJob, Result};

/// The dataset cut into parts of `size` consecutive images (the last one may be shorter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts {
    pub size: usize,
    pub images: usize,
}

impl Parts {
    pub fn of(job: &RelevanceJob<'_>) -> Self {
        Parts {
            size: job.settings.part_size,
            images: job.dataset.samples.len(),
        }
    }

    pub fn count(&self) -> usize {
        self.images.div_ceil(self.size)
    }

    /// The sample indices of `part`.
    pub fn samples(&self, part: usize) -> Range<usize> {
        let start = part * self.size;
        start..(start + self.size).min(self.images)
    }
}

/// Create the stage folder and write its manifest, refusing a folder that holds parts computed
/// from other inputs or settings (the writer's own guard; the pipeline clears a stale folder
/// first): parts of different inputs are never mixed.
pub(crate) fn claim_folder(job: &RelevanceJob<'_>, parts: Parts) -> Result<()> {
    let manifest = RelevanceManifest {
        fingerprint: job.fingerprint.clone(),
        classes: job.dataset.classes.clone(),
        images: parts.images,
        parts: parts.count(),
        layout: job.layout(),
    };
    std::fs::create_dir_all(&job.dir).map_err(|source| RelevanceError::CreateDir {
        dir: job.dir.clone(),
        source,
    })?;
    if spray_store::stage::relevance_state(&job.dir, &manifest.fingerprint)
        == spray_store::StageState::Stale
    {
        return Err(RelevanceError::StaleParts {
            dir: job.dir.clone(),
        });
    }
    spray_store::write_atomically(
        &manifest_path(&job.dir),
        &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )?;
    Ok(())
}

/// The rows of the part being built: one record per explained (image, class), one error row
/// per image that could not be used.
#[derive(Default)]
pub(crate) struct PartRows {
    pub records: Vec<RelevanceRecord>,
    pub errors: Vec<ErrorRecord>,
}

impl PartRows {
    /// Write the finished `part`: its error rows, then the part file, which is the completion
    /// mark (written last, atomically).
    pub fn write(&self, job: &RelevanceJob<'_>, part: usize) -> Result<()> {
        spray_store::relevance::write_errors(&errors_path(&job.dir, part), &self.errors)?;
        spray_store::relevance::write_part(
            &part_path(&job.dir, part),
            &job.layout(),
            &self.records,
        )?;
        Ok(())
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.errors.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cut_the_dataset_into_consecutive_runs() {
        let parts = Parts {
            size: 4,
            images: 10,
        };
        assert_eq!(parts.count(), 3);
        assert_eq!(parts.samples(0), 0..4);
        assert_eq!(parts.samples(2), 8..10);
    }
}

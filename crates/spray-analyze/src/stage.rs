//! The analyze stage: read the relevance dataset, claim the output folder, then analyse this
//! shard's unfinished groups side by side, each in every feature space, and write each
//! group's files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use spray_store::analysis::{samples_path, spectrum_path};
use spray_store::relevance as rel;
use spray_store::Shard;

use crate::dataset::GroupRows;
use crate::error::Result;
use crate::group::{analyze_group_observed, GroupPoints};
use crate::output::{self, fingerprint};
use crate::progress::{StageBars, StepObserver};
use crate::read::{self, GridSource};
use crate::schedule;
use crate::settings::AnalysisSettings;
use crate::sources::{self, SpacePlan};

pub struct AnalyzeJob<'a> {
    /// `<out>/relevance`.
    pub relevance_dir: PathBuf,
    /// `<out>/analysis`.
    pub dir: PathBuf,
    pub settings: &'a AnalysisSettings,
    /// Groups g with g mod count = index.
    pub shard: Shard,
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AnalyzeSummary {
    pub groups_total: usize,
    pub groups_done_before: usize,
    pub groups_written: usize,
    pub samples: usize,
    pub seconds: f64,
}

/// Run the analyze stage over a finished relevance dataset.
pub fn run(job: &AnalyzeJob<'_>) -> Result<AnalyzeSummary> {
    let started = Instant::now();
    let settings = job.settings;
    let (manifest, parts) = rel::finished_parts(&job.relevance_dir)?;
    let source = GridSource::new(settings, &manifest.layout)?;
    let spaces = SpacePlan::new(settings, &manifest.layout, source.from_map);
    let dataset = read::read_dataset(&job.relevance_dir, parts, &source, &spaces, settings)?;
    let by_group = dataset.groups(settings.grouping);
    let groups: Vec<i32> = by_group.keys().copied().collect();
    output::claim(
        &job.dir,
        fingerprint(&manifest.fingerprint, settings),
        &groups,
    )?;

    let (mine, todo) = output::shard_groups(&job.dir, &groups, job.shard);
    let done_before = mine.len() - todo.len();
    let bars = StageBars::new(job.progress, mine.len());
    bars.groups.inc(done_before as u64);
    let steps = bars.steps(todo.len());
    // Groups are independent: analyse them side by side (t-SNE runs on one thread per group
    // for determinism, so this is what keeps all cores busy on many-class datasets). Each
    // group's files depend only on its own rows, so the order of completion does not matter.
    let done = schedule::side_by_side(&todo, schedule::groups_in_flight(), |&class| {
        let group = dataset.group(class, &by_group[&class], &manifest.classes);
        bars.groups.set_message(group.name.clone());
        let samples = analyse_group(&group, &spaces, settings, steps.as_ref(), &job.dir)?;
        bars.groups.inc(1);
        Ok(samples)
    })?;
    bars.finish();
    Ok(AnalyzeSummary {
        groups_total: mine.len(),
        groups_done_before: done_before,
        groups_written: done.len(),
        samples: done.iter().sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One group in every space of `spaces`, its spectra and samples written to `dir`; the
/// group's size.
fn analyse_group(
    group: &GroupRows<'_>,
    spaces: &SpacePlan,
    settings: &AnalysisSettings,
    steps: &dyn StepObserver,
    dir: &Path,
) -> Result<usize> {
    let ids = group.ids();
    let mut spectra = Vec::new();
    let mut samples = Vec::new();
    sources::for_each_space(spaces, group, |space| {
        let analysis = analyze_group_observed(
            &GroupPoints {
                class_index: group.class,
                class_name: group.name.clone(),
                space: space.space,
                ids: ids.clone(),
                features: space.features,
                mass: space.mass,
            },
            settings,
            steps,
        )?;
        spectra.push(analysis.spectrum);
        samples.extend(analysis.samples);
        Ok(())
    })?;
    spray_store::analysis::write_group(
        &spectrum_path(dir, group.class),
        &samples_path(dir, group.class),
        &spectra,
        &samples,
    )?;
    Ok(group.members.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::tests::{concept_layout, record, write_dataset};
    use crate::AnalyzeError;
    use spray_store::FeatureSpace;

    fn job<'a>(root: &Path, settings: &'a AnalysisSettings, shard: Shard) -> AnalyzeJob<'a> {
        AnalyzeJob {
            relevance_dir: root.join("relevance"),
            dir: root.join("analysis"),
            settings,
            shard,
            progress: false,
        }
    }

    /// Two classes of 12 maps each, with two concept layers.
    fn relevance(root: &Path) {
        let rows = |class: i32| -> Vec<_> {
            (0..12)
                .map(|i| {
                    let mut r = record(i64::from(class) * 100 + i, class, 5);
                    // two kinds of map per class: the left or the right half
                    let left = i % 3 == 0;
                    r.grids = vec![if left {
                        vec![1.0, 0.0, 1.0, 0.0]
                    } else {
                        vec![0.0, 1.0, 0.2 * (i as f32), 1.0]
                    }];
                    r
                })
                .collect()
        };
        write_dataset(
            &root.join("relevance"),
            &concept_layout(&[2, 3]),
            &[rows(1), rows(0)],
        );
    }

    #[test]
    fn every_group_is_written_in_every_space_and_a_rerun_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        relevance(tmp.path());
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        let first = run(&job(tmp.path(), &settings, "0/2".parse().unwrap())).unwrap();
        assert_eq!(
            (first.groups_total, first.groups_written, first.samples),
            (1, 1, 12)
        );
        let rest = run(&job(tmp.path(), &settings, Shard::ALL)).unwrap();
        assert_eq!(
            (
                rest.groups_total,
                rest.groups_done_before,
                rest.groups_written
            ),
            (2, 1, 1)
        );
        let (spectra, samples) = crate::read_all(&tmp.path().join("analysis")).unwrap();
        let spaces: Vec<(i32, FeatureSpace)> =
            spectra.iter().map(|s| (s.class_index, s.space)).collect();
        assert_eq!(
            spaces,
            vec![
                (0, FeatureSpace::Relevance),
                (0, FeatureSpace::Concept(0)),
                (0, FeatureSpace::Concept(1)),
                (1, FeatureSpace::Relevance),
                (1, FeatureSpace::Concept(0)),
                (1, FeatureSpace::Concept(1)),
            ]
        );
        assert_eq!(samples.len(), 2 * 3 * 12);
        assert!(spectra.iter().all(|s| s.n == 12));
    }

    #[test]
    fn another_analysis_in_the_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        relevance(tmp.path());
        let settings = AnalysisSettings {
            grid: 2,
            ..AnalysisSettings::default()
        };
        run(&job(tmp.path(), &settings, "0/2".parse().unwrap())).unwrap();
        let other = AnalysisSettings {
            seed: 1,
            ..settings.clone()
        };
        let err = run(&job(tmp.path(), &other, Shard::ALL)).unwrap_err();
        assert!(matches!(err, AnalyzeError::StaleOutput { .. }), "{err}");
    }
}

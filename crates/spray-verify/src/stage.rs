//! The stage: which classes are tested, one unit per class in two parts (`UnitPart`: its
//! evidence, its tables; resumable, shardable) computed by a few workers at once
//! (`workers`), every class's evidence before any class's tables, and the tables assembled
//! once every part is present.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use spray_dataset::{Dataset, Preprocess};
use spray_engine::{CompiledModel, Device, OptimizedCache, SessionConfig};
use spray_store::analysis::ClassSpectrum;
use spray_store::verify::{self as contract, ClassUnit, UnitPart, VerifyManifest};
use spray_store::StageKey;

use crate::aopc::{aopc_row, AopcSetup};
use crate::evidence::{class_evidence, Bench};
use crate::examples::{ExampleWriter, PictureQueue};
use crate::groups::AnalysedGroups;
use crate::images::{pixel_bounds, CachedImages, DatasetImages, ImageSource};
use crate::members::{
    class_name, read_logits, read_members, recipients, KnownLogits, MembersByClass,
};
use crate::padding::padding_rows;
use crate::scorer::{ForwardScorer, Scorer, SessionPool};
use crate::settings::VerifySettings;
use crate::workers::{self, Workers};
use crate::{Result, VerifyError};

pub struct VerifyJob<'a> {
    pub relevance_dir: PathBuf,
    pub analysis_dir: PathBuf,
    /// `<out>/verify`.
    pub dir: PathBuf,
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
    /// The compiled LRP model, or its signature and how to load it (not at all when
    /// `engine_cache` holds the forward graph and no model-side test asks for a steered one).
    pub model: CompiledModel<'a>,
    /// Where ONNX Runtime's optimised graph of the model's forward half is kept between
    /// processes (each verify shard); `None`: optimised again by each.
    pub engine_cache: Option<OptimizedCache>,
    /// The analysis grid (the groups' maps are compared at this resolution).
    pub grid: usize,
    pub settings: &'a VerifySettings,
    /// The composite's name, for the AOPC table.
    pub composite: String,
    pub device: Device,
    pub threads: usize,
    /// The stage's fingerprint ([`fingerprint`]), stored in `_verify.json`.
    pub fingerprint: String,
    /// This process's share of the classes.
    pub shard: spray_store::Shard,
}

#[derive(Debug, Default)]
pub struct VerifySummary {
    /// Tested classes among this run's units.
    pub classes: usize,
    /// Groups measured.
    pub clusters: usize,
    /// Images scored by the model.
    pub images_run: usize,
    /// Per class this run computed, in class order: its name, groups tested, images scored
    /// (groups, padding and AOPC together).
    pub per_class: Vec<ClassCost>,
    pub seconds: f64,
    /// Units (classes) computed by this run, and found finished by an earlier one.
    pub units_written: usize,
    pub units_done_before: usize,
    /// Every unit was present and the tables were assembled.
    pub complete: bool,
}

/// What one class's unit cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassCost {
    pub class_name: String,
    pub groups: usize,
    pub images_scored: usize,
}

/// Fingerprint of the stage: the analysis it reads, its settings, the spray version.
pub fn fingerprint(analysis_fingerprint: &str, settings: &VerifySettings) -> String {
    StageKey::new(
        &[analysis_fingerprint],
        Some(("verify", contract::SCHEMA_VERSION)),
    )
    .settings(settings)
    .finish()
}

/// The classes whose groups are tested: the flagged ones and the top `classes` of the
/// analysis' ranking (the report's order and flag rule: `spray_store::ranking`).
pub fn chosen_classes(spectra: &[ClassSpectrum], settings: &VerifySettings) -> Vec<(i32, String)> {
    let ranked = spray_store::ranking::rank(spectra);
    let flagged = spray_store::ranking::flag(&ranked);
    ranked
        .iter()
        .filter(|r| r.spectrum.group().class().is_some())
        .enumerate()
        .filter(|(i, r)| *i < settings.classes || flagged.contains(&r.spectrum.class_name))
        .map(|(_, r)| (r.spectrum.class_index, r.spectrum.class_name.clone()))
        .collect()
}

/// What every unit of a run reads.
struct StageInputs<'a> {
    job: &'a VerifyJob<'a>,
    by_class: MembersByClass,
    classes: Vec<String>,
    chosen: Vec<(i32, String)>,
    analysed: AnalysedGroups,
    /// The relevance stage's logits of every chosen class's recipients.
    logits: KnownLogits,
}

impl StageInputs<'_> {
    /// The class's name where its groups are tested (`chosen_classes`).
    fn chosen_name(&self, class: i32) -> Option<&str> {
        self.chosen
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, name)| name.as_str())
    }
}

/// Run this process's share of the stage (every unit without `job.shard`), then assemble the
/// tables if every unit is present.
pub fn run(job: &VerifyJob<'_>) -> Result<VerifySummary> {
    let started = Instant::now();
    let (by_class, classes) = read_members(&job.relevance_dir, job.grid)?;
    let (spectra, samples) = spray_store::analysis::read_all(&job.analysis_dir)?;
    let chosen = chosen_classes(&spectra, job.settings);
    let wanted = chosen
        .iter()
        .flat_map(|(c, _)| {
            let (first, later) = recipients(&by_class, *c, job.settings.recipient_counts());
            first.into_iter().chain(later)
        })
        .collect();
    let inputs = StageInputs {
        job,
        logits: read_logits(&job.relevance_dir, &wanted)?,
        chosen,
        analysed: AnalysedGroups::new(&spectra, &samples, job.settings),
        by_class,
        classes,
    };
    let dataset_images = DatasetImages {
        dataset: job.dataset,
        preprocess: job.preprocess,
    };
    let images = CachedImages::new(&dataset_images, IMAGE_CACHE_BYTES);
    let units: Vec<i32> = inputs.by_class.keys().copied().collect();
    contract::write_manifest(
        &job.dir,
        &VerifyManifest {
            fingerprint: job.fingerprint.clone(),
            units: units.clone(),
        },
    )?;
    let mut summary = VerifySummary::default();
    let mut pending = Vec::new();
    for (position, &class) in units.iter().enumerate() {
        if !job.shard.owns(position) {
            continue;
        }
        if contract::unit_done(&job.dir, class) {
            summary.units_done_before += 1;
        } else {
            pending.push(class);
        }
    }
    // Every pending class's evidence first, then every one's tables (`UnitPart`), each part
    // that is not on disk already.
    let parts: Vec<(UnitPart, i32)> = UnitPart::ALL
        .iter()
        .flat_map(|&part| pending.iter().map(move |&class| (part, class)))
        .filter(|&(part, class)| !contract::unit_path(&job.dir, class, part).is_file())
        .collect();
    let workers = Workers::plan(job.device, job.threads, workers::cores(), pending.len());
    // Made one after another: the first keeps ONNX Runtime's optimised graph in
    // `engine_cache`, the others load it.
    let mut scorers = (0..workers.count)
        .map(|_| {
            ForwardScorer::new(
                &job.model,
                SessionConfig {
                    device: job.device,
                    threads: workers.session_threads,
                },
                (
                    job.preprocess.input_size.map(|v| v as usize),
                    job.preprocess.layout,
                ),
                job.settings.batch_size,
                job.engine_cache.as_ref(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    SessionPool::join(&mut scorers);
    let queue = UnitQueue {
        parts: &parts,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    };
    let finished = std::thread::scope(|scope| {
        let handles: Vec<_> = scorers
            .iter_mut()
            .map(|scorer| {
                let (inputs, images, queue) = (&inputs, &images, &queue);
                scope.spawn(move || work(inputs, scorer, images, queue))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(VerifyError::Panicked("a verify worker")))
            })
            .collect::<Vec<_>>()
    });
    let mut done = Vec::new();
    for worker in finished {
        done.extend(worker?);
    }
    add_costs(&mut summary, &inputs, &pending, &done);
    summary.images_run = scorers.iter().map(|s| s.images_scored()).sum();
    if units.iter().all(|&c| contract::unit_done(&job.dir, c)) {
        assemble(&job.dir, &units)?;
        summary.complete = true;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Per class of `pending`, in class order, what its parts `done` this run cost, added to
/// `summary`.
fn add_costs(
    summary: &mut VerifySummary,
    inputs: &StageInputs<'_>,
    pending: &[i32],
    done: &[PartDone],
) {
    for &class in pending {
        let parts: Vec<&PartDone> = done.iter().filter(|d| d.class == class).collect();
        if parts.is_empty() {
            continue;
        }
        let evidence = parts.iter().find(|d| d.part == UnitPart::Evidence);
        let groups = evidence.map_or(0, |d| d.groups);
        let chosen = inputs.chosen_name(class).is_some();
        summary.classes += usize::from(chosen && evidence.is_some());
        summary.clusters += groups;
        summary.per_class.push(ClassCost {
            class_name: class_name(&inputs.classes, class),
            groups,
            images_scored: parts.iter().map(|d| d.images_scored).sum(),
        });
        summary.units_written += usize::from(contract::unit_done(&inputs.job.dir, class));
    }
}

/// The parts this run computes (every class's evidence, then every class's tables), handed
/// out one at a time to whichever worker is free (parts differ in cost: a chosen class has
/// its groups tested, another's evidence is empty).
struct UnitQueue<'a> {
    parts: &'a [(UnitPart, i32)],
    next: AtomicUsize,
    /// A worker failed: the others take no further part.
    failed: AtomicBool,
}

impl UnitQueue<'_> {
    /// The next part to compute; `None` when none is left or a worker failed.
    fn take(&self) -> Option<(UnitPart, i32)> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        self.parts.get(position).copied()
    }
}

/// A part of a class's unit that a worker computed and wrote.
struct PartDone {
    class: i32,
    part: UnitPart,
    /// Groups measured (the evidence part's rows).
    groups: usize,
    images_scored: usize,
}

/// One worker: parts from `queue` until none is left, each written once its pictures are on
/// disk. Its own picture thread, so that waiting for one class's pictures
/// (`PictureQueue::flush`) never waits for another worker's.
fn work(
    inputs: &StageInputs<'_>,
    scorer: &mut ForwardScorer<'_>,
    images: &CachedImages<'_>,
    queue: &UnitQueue<'_>,
) -> Result<Vec<PartDone>> {
    let job = inputs.job;
    std::thread::scope(|scope| {
        let (pictures, picture_thread) = PictureQueue::spawn(scope);
        let mut done = Vec::new();
        let outcome = (|| -> Result<()> {
            while let Some((part, class)) = queue.take() {
                let scored_before = scorer.images_scored();
                let unit = match part {
                    UnitPart::Evidence => {
                        let unit = evidence_part(inputs, (&mut *scorer, images, &pictures), class)?;
                        // Its pictures first: a part on disk lists only pictures that are
                        // there.
                        pictures.flush()?;
                        unit
                    }
                    UnitPart::Tables => tables_part(inputs, (&mut *scorer, images), class)?,
                };
                contract::write_unit(&job.dir, &unit, part)?;
                done.push(PartDone {
                    class,
                    part,
                    groups: unit.evidence.len(),
                    images_scored: scorer.images_scored() - scored_before,
                });
            }
            Ok(())
        })();
        scorer.lend();
        if outcome.is_err() {
            queue.failed.store(true, Ordering::Relaxed);
        }
        drop(pictures);
        let joined = picture_thread
            .join()
            .map_err(|_| VerifyError::Panicked("the picture thread"));
        outcome.and(joined).map(|()| done)
    })
}

/// The decoded images the stage keeps (`CachedImages`): 512 MiB, some 850 images at
/// 224 × 224.
const IMAGE_CACHE_BYTES: usize = 512 << 20;

/// A class's evidence part: its groups' evidence when it is chosen (else none).
fn evidence_part(
    inputs: &StageInputs<'_>,
    (scorer, images, queue): (&mut dyn Scorer, &dyn ImageSource, &PictureQueue),
    class: i32,
) -> Result<ClassUnit> {
    let job = inputs.job;
    let size = job.preprocess.input_size.map(|v| v as usize);
    let mut unit = ClassUnit::empty(class);
    if let Some(name) = inputs.chosen_name(class) {
        let pictures = ExampleWriter {
            dir: &job.dir,
            class_index: class,
            preprocess: job.preprocess,
            size,
            queue,
        };
        let mut bench = Bench {
            scorer,
            images,
            settings: job.settings,
            grid: job.grid,
            size,
            bounds: pixel_bounds(job.preprocess),
            pictures: &pictures,
            logits: &inputs.logits,
        };
        unit.evidence = class_evidence(
            &mut bench,
            (class, name),
            &inputs.by_class,
            &inputs.analysed,
        )?;
    }
    Ok(unit)
}

/// A class's tables part: its padding rows, and its AOPC row when it is chosen.
fn tables_part(
    inputs: &StageInputs<'_>,
    (scorer, images): (&mut dyn Scorer, &dyn ImageSource),
    class: i32,
) -> Result<ClassUnit> {
    let job = inputs.job;
    let size = job.preprocess.input_size.map(|v| v as usize);
    let mut unit = ClassUnit::empty(class);
    let chosen = inputs.chosen_name(class).is_some();
    let members = &inputs.by_class[&class];
    if job.settings.padding {
        unit.padding = padding_rows(
            scorer,
            (job.dataset, job.preprocess),
            (class, members, &inputs.classes),
            job.settings.table_images,
        )?;
    }
    // AOPC for the tested classes only: it measures the explanation, and a sample of classes
    // shows it; for every class of an ImageNet-sized run it would cost 30 × 17 × 2 forward
    // passes per class, a million images in all. Padding stays for every class: a class that
    // leans on the border is a finding whatever its analysis rank.
    if job.settings.aopc && chosen {
        let setup = AopcSetup {
            grid: job.grid,
            steps: job.settings.aopc_steps,
            images: job.settings.aopc_images,
            size,
            seed: job.settings.seed,
        };
        let name = class_name(&inputs.classes, class);
        unit.aopc = vec![aopc_row(
            scorer,
            images,
            (class, name, job.composite.clone()),
            members,
            &setup,
        )?];
    }
    Ok(unit)
}

/// Read every unit (in class order) and write the tables; `evidence.csv` last.
fn assemble(dir: &Path, units: &[i32]) -> Result<()> {
    let mut evidence = Vec::new();
    let mut padding = Vec::new();
    let mut aopc = Vec::new();
    for &class in units {
        for part in UnitPart::ALL {
            let unit = contract::read_unit(dir, class, part)?;
            evidence.extend(unit.evidence);
            padding.extend(unit.padding);
            aopc.extend(unit.aopc);
        }
    }
    contract::sort_evidence(&mut evidence);
    contract::write_tables(dir, &padding, &aopc)?;
    contract::write_evidence(&contract::evidence_path(dir), &evidence)?;
    Ok(())
}

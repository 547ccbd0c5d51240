//! Stage 3 (before the report): turn suspicious clusters into evidence.
//!
//! SpRAy ranks *suspects*. For the most suspicious classes this stage asks the model itself
//! whether it depends on what a cluster's heatmaps highlight (thesis §6.3's manual tests, made
//! automatic):
//!
//! - the cluster's **region**: grid cells where its mean (L1-normalised) heatmap exceeds the
//!   rest of the class by `margin` of the largest excess ([`region`]);
//! - **occlusion**: the region of the cluster's images filled (per-image mean colour, or seeded
//!   noise) → relative drop of the class logit and of accuracy; the same on the class's other
//!   images as the contrast;
//! - **transplant**: the region pasted from cluster members into other classes' images → gain
//!   of this class's logit and the share of predictions that flip to it; the control pastes
//!   the same-shaped region from the class's other images, at the same pixels and where each
//!   one's own relevance is ([`RegionControl`]), and the stronger of the two counts.
//!
//! A group of the colour space (images whose global colour statistics set them apart) has no
//! region: its "occlusion" gives each member the colours of one of the class's other images,
//! its "transplant" gives other classes' images a member's colours (per-channel mean and
//! spread, `perturb::transfer_colour`), and the controls do the same with the class's other
//! images' colours.
//!
//! Output: `<out>/verify/evidence.csv`, strongest evidence first (flip rate, then occlusion
//! drop beyond the contrast). Logits come from the same compiled LRP model and batches as the
//! relevance stage (pre-softmax, target = predicted).

pub mod examples;
mod perturb;
pub mod region;
mod tables;
pub mod units;

use perturb::{channel_stats, occlude, paste, transfer_colour};

pub use tables::{aopc_path, evidence_json_path, padding_path, write_evidence, write_tables};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use spray_dataset::{Dataset, Preprocess, SquareMode, TensorLayout};
use spray_engine::{Device, LrpEngine, SessionConfig};
use spray_lrp::LrpModel;
use spray_store::relevance::{self as rel, ReadOptions};
use spray_store::verify::ClusterLevel;
use spray_store::FeatureSpace;
use spray_store::Fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] spray_store::StoreError),
    #[error(transparent)]
    Engine(#[from] spray_engine::EngineError),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

/// How the occluded region is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// The image's own mean per channel (thesis §3: a perturbation that removes the content
    /// without adding structure).
    #[default]
    Mean,
    /// Seeded uniform noise within the image's per-channel range.
    Noise,
    /// The image itself blurred (a Gaussian of σ ≈ 1/16 of the shorter side, three box
    /// passes): colour and coarse shape stay, fine structure — a tag, a texture — goes, the
    /// thesis' perturbation that adds the least out-of-distribution content.
    Blur,
}

/// Where the transplant control of a relevance-space group takes its region from the
/// class's other images (the concept and colour spaces have their own controls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionControl {
    /// Both controls below; the one that turns more recipients counts. Why: each explains a
    /// different innocent flip away — the place itself (same pixels), or the class's own
    /// object that the group merely has at another place (moved). On the scenario suite
    /// `same-pixels` alone flags the clean class whose object sits in one of two places
    /// (mixed "disc", 0.41) and `moved` alone flags a clean class whose relevance lies on
    /// the image's edges (padding "ring", 0.39); the stronger of both flags neither and every
    /// shortcut stays at ≥ 0.37 (benches/RESULTS.md).
    #[default]
    Both,
    /// The same pixels in every image (the only control before stop 24).
    SamePixels,
    /// The group's region moved, per image, to where that image's own relevance is
    /// (`region::best_shift`): a region that holds the object in the group's images holds
    /// the object in the control's too. A region spanning the grid (a frame) cannot move.
    Moved,
}

/// `[verify]` in a pipeline file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// Run the stage at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How many of the most suspicious classes (by the analysis' ranking) have their clusters
    /// tested; every flagged class is tested as well. The report ranks the tested classes
    /// first, by what the test found (spray_store::ranking::rank_with_evidence), so this is
    /// also how far down the final ranking is backed by evidence.
    #[serde(default = "default_classes")]
    pub classes: usize,
    /// Clusters smaller than this are not tested.
    #[serde(default = "default_min_cluster")]
    pub min_cluster: usize,
    /// A cell is in the region when the cluster's excess there is at least this share of its
    /// largest excess.
    #[serde(default = "default_margin")]
    pub margin: f64,
    #[serde(default)]
    pub fill: Fill,
    /// Images of other classes that receive the region, per cluster (and the most contrast
    /// images occluded).
    #[serde(default = "default_transplant")]
    pub transplant_images: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub seed: u64,
    /// Padding sensitivity (thesis §6.3.1): every class's images under each square mode.
    #[serde(default = "yes")]
    pub padding: bool,
    /// Images per class for the padding and AOPC tables.
    #[serde(default = "default_table_images")]
    pub table_images: usize,
    /// Region perturbation (thesis Ch. 3): AOPC of MoRF against a seeded random order.
    #[serde(default = "yes")]
    pub aopc: bool,
    /// Perturbation steps (grid cells removed, most relevant first) for AOPC.
    #[serde(default = "default_aopc_steps")]
    pub aopc_steps: usize,
    /// Also test the groups of the analysis' concept spaces (each image's own region, see
    /// `region::member_region`), not only the relevance maps'.
    #[serde(default = "yes")]
    pub concept_groups: bool,
    /// The smallest share of its class a concept-space group must have to be tested.
    #[serde(default = "default_concept_min_share")]
    pub concept_min_share: f64,
    /// Also test the groups of the analysis' colour space, by colour transfer. Subject to
    /// `concept_min_share` too: its effect also averages over its donors.
    #[serde(default = "yes")]
    pub colour_groups: bool,
    /// Where a relevance-space group's control region lies in the class's other images.
    #[serde(default)]
    pub control: RegionControl,
}

fn default_table_images() -> usize {
    30
}
fn default_aopc_steps() -> usize {
    16
}

fn yes() -> bool {
    true
}
fn default_classes() -> usize {
    10
}
fn default_min_cluster() -> usize {
    3
}
fn default_concept_min_share() -> f64 {
    0.1
}
fn default_margin() -> f64 {
    0.5
}
fn default_transplant() -> usize {
    100
}
fn default_batch() -> usize {
    32
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            enabled: true,
            classes: default_classes(),
            min_cluster: default_min_cluster(),
            margin: default_margin(),
            fill: Fill::Mean,
            transplant_images: default_transplant(),
            batch_size: default_batch(),
            seed: 0,
            padding: true,
            table_images: default_table_images(),
            aopc: true,
            aopc_steps: default_aopc_steps(),
            concept_groups: true,
            concept_min_share: default_concept_min_share(),
            colour_groups: true,
            control: RegionControl::Both,
        }
    }
}

/// (class, image, space) → (cluster, split side) of every tested space's samples.
type GroupLabels = BTreeMap<(i32, i64, FeatureSpace), (i32, i32)>;

pub use spray_store::verify::Evidence;

pub struct VerifyJob<'a> {
    pub relevance_dir: PathBuf,
    pub analysis_dir: PathBuf,
    /// `<out>/verify`.
    pub dir: PathBuf,
    pub dataset: &'a Dataset,
    pub preprocess: &'a Preprocess,
    pub model: &'a LrpModel,
    /// The analysis grid (the clusters' maps are compared at this resolution).
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

/// One row of `padding.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaddingEffect {
    pub class_index: i32,
    pub class_name: String,
    pub mode: SquareMode,
    pub images: usize,
    /// Mean class logit under `mode` minus under the pipeline's own preprocessing.
    pub logit_change: f64,
    pub accuracy: f64,
    pub accuracy_baseline: f64,
}

/// One row of `aopc.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Aopc {
    pub class_index: i32,
    pub class_name: String,
    pub composite: String,
    pub images: usize,
    pub steps: usize,
    pub aopc_morf: f64,
    pub aopc_random: f64,
}

/// Everything the stage found.
#[derive(Debug, Default)]
pub struct VerifyOutput {
    pub evidence: Vec<Evidence>,
    pub padding: Vec<PaddingEffect>,
    pub aopc: Vec<Aopc>,
}

#[derive(Debug, Default)]
pub struct VerifySummary {
    /// Tested classes among this run's units.
    pub classes: usize,
    pub clusters: usize,
    pub images_run: usize,
    pub seconds: f64,
    /// Units (classes) computed by this run, and found finished by an earlier one.
    pub units_written: usize,
    pub units_done_before: usize,
    /// Every unit was present and the tables were assembled.
    pub complete: bool,
}

pub use spray_store::stage::verify_evidence_path as evidence_path;

/// The six ways of making an image square of thesis §6.3.1.
pub const SQUARE_MODES: [SquareMode; 6] = [
    SquareMode::Border,
    SquareMode::Mirror,
    SquareMode::Crop,
    SquareMode::Noise,
    SquareMode::RandomColor,
    SquareMode::FixedColor,
];

pub use spray_store::stage::verify_manifest_path as manifest_path;

/// Fingerprint of the stage: the analysis it reads, its settings, the spray version.
pub fn fingerprint(analysis_fingerprint: &str, settings: &VerifySettings) -> String {
    Fingerprint::new()
        .bytes(analysis_fingerprint)
        .bytes(format!(
            "verify-schema-{}",
            spray_store::verify::SCHEMA_VERSION
        ))
        .json(settings)
        .spray_version()
        .finish()
}

/// One image of the stage's work: which dataset sample, and its class-`class` logit before.
struct Member {
    image_index: usize,
    map: Vec<f32>,
    predicted: i32,
    class_logit: f32,
}

/// Logits of a batch of prepared CHW tensors.
struct Scorer<'a> {
    engine: LrpEngine,
    job: &'a VerifyJob<'a>,
    images_run: usize,
}

impl Scorer<'_> {
    fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let [h, w] = self.job.preprocess.input_size.map(|v| v as usize);
        let mut out = Vec::with_capacity(tensors.len());
        for chunk in tensors.chunks(self.job.settings.batch_size.max(1)) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            let mut input = ndarray::ArrayD::from_shape_vec(vec![chunk.len(), 3, h, w], flat)
                .map_err(|e| VerifyError::Config(e.to_string()))?;
            if self.job.preprocess.layout == TensorLayout::Nhwc {
                input = input
                    .permuted_axes(vec![0, 2, 3, 1])
                    .as_standard_layout()
                    .into_owned();
            }
            let e = self.engine.explain(input.view(), &vec![-1; chunk.len()])?;
            for row in e.logits.rows() {
                out.push(row.to_vec());
            }
            self.images_run += chunk.len();
        }
        Ok(out)
    }
}

fn load(job: &VerifyJob<'_>, image_index: usize) -> Result<Vec<f32>> {
    load_with(job, job.preprocess, image_index)
}

fn load_with(job: &VerifyJob<'_>, preprocess: &Preprocess, image_index: usize) -> Result<Vec<f32>> {
    let sample = &job.dataset.samples[image_index];
    preprocess
        .load(&sample.path, sample.index as u64)
        .map(|p| p.tensor)
        .map_err(|e| {
            VerifyError::Config(format!(
                "{}: {e} (it decoded in the relevance stage)",
                sample.path.display()
            ))
        })
}

/// Per tensor channel, the values a pixel can take (0 to full scale through the
/// preprocessing's scale, mean and std).
fn pixel_bounds(pre: &Preprocess) -> [(f32, f32); 3] {
    let full = match pre.scale {
        spray_dataset::PixelScale::Unit => 1.0,
        spray_dataset::PixelScale::Byte => 255.0,
    };
    std::array::from_fn(|c| {
        let std = if pre.std[c] == 0.0 { 1.0 } else { pre.std[c] };
        let (a, b) = ((0.0 - pre.mean[c]) / std, (full - pre.mean[c]) / std);
        (a.min(b), a.max(b))
    })
}

fn relative_drop(before: f32, after: f32) -> f64 {
    (before - after) as f64 / (before.abs() as f64).max(1e-6)
}

/// Every `step`-th of `items` so that at most `limit` remain, in order (deterministic).
fn spread<T: Copy>(items: &[T], limit: usize) -> Vec<T> {
    if items.len() <= limit || limit == 0 {
        return items.to_vec();
    }
    (0..limit).map(|i| items[i * items.len() / limit]).collect()
}

/// Run the stage: test the clusters of the `classes` most suspicious classes, then the padding
/// and AOPC tables over every class.
/// Run this process's share of the stage (every unit without `job.shard`), then assemble the
/// tables if every unit is present.
pub fn run(job: &VerifyJob<'_>) -> Result<VerifySummary> {
    let started = Instant::now();
    let g = job.grid;
    let (manifest, parts) = rel::finished_parts(&job.relevance_dir)?;
    let from_map = !manifest.layout.grids.contains(&g);
    let options = ReadOptions {
        grids: if from_map { Vec::new() } else { vec![g] },
        map: from_map,
        images: false,
        concept: false,
        colour: false,
    };
    // Per class: its rows (image, map, prediction, logit).
    let mut by_class: BTreeMap<i32, Vec<Member>> = BTreeMap::new();
    for part in &parts {
        for r in rel::read_part(part, &options)? {
            let map = if from_map {
                let (mh, mw, m) = r.map.as_ref().ok_or_else(|| {
                    VerifyError::Config("the relevance dataset stores no map".into())
                })?;
                rel::sum_pool(m, *mh as usize, *mw as usize, g, g)
            } else {
                r.grids[0].clone()
            };
            by_class.entry(r.class_index).or_default().push(Member {
                image_index: r.image_index as usize,
                map,
                predicted: r.predicted_class,
                class_logit: r.target_logit,
            });
        }
    }
    for members in by_class.values_mut() {
        members.sort_by_key(|m| m.image_index);
    }
    let (spectra, samples) = spray_store::analysis::read_all(&job.analysis_dir)?;
    // The flagged classes and the top `classes` by the report's ranking (same order, same
    // flag rule: spray_store::ranking).
    let ranked = spray_store::ranking::rank(&spectra);
    let flagged = spray_store::ranking::flag(&ranked);
    let chosen: Vec<(i32, String)> = ranked
        .iter()
        .filter(|r| r.spectrum.class_index >= 0)
        .enumerate()
        .filter(|(i, r)| *i < job.settings.classes || flagged.contains(&r.spectrum.class_name))
        .map(|(_, r)| (r.spectrum.class_index, r.spectrum.class_name.clone()))
        .collect();
    // Every suspect space's groupings: the relevance maps' and, when tested, each concept
    // layer's and the colour space's (the image-space baseline is what they are compared to).
    let clusters_of: GroupLabels = samples
        .iter()
        .filter(|s| match s.space {
            FeatureSpace::Relevance => true,
            FeatureSpace::Concept(_) => job.settings.concept_groups,
            FeatureSpace::Colour => job.settings.colour_groups,
            FeatureSpace::Image => false,
        })
        .map(|s| {
            (
                (s.class_index, s.image_index, s.space),
                (s.cluster, s.split),
            )
        })
        .collect();

    let mut scorer = Scorer {
        engine: LrpEngine::new(
            job.model,
            SessionConfig {
                device: job.device,
                threads: job.threads,
            },
        )?,
        job,
        images_run: 0,
    };
    let mut summary = VerifySummary::default();
    let units: Vec<i32> = by_class.keys().copied().collect();
    units::write_manifest(
        &job.dir,
        &units::VerifyManifest {
            fingerprint: job.fingerprint.clone(),
            units: units.clone(),
        },
    )?;
    for (position, &class) in units.iter().enumerate() {
        if !job.shard.owns(position) {
            continue;
        }
        if units::unit_path(&job.dir, class).is_file() {
            summary.units_done_before += 1;
            continue;
        }
        let mut unit = units::ClassUnit {
            class_index: class,
            evidence: Vec::new(),
            padding: Vec::new(),
            aopc: Vec::new(),
        };
        if let Some((_, name)) = chosen.iter().find(|(c, _)| *c == class) {
            summary.classes += 1;
            unit.evidence = class_evidence(
                &mut scorer,
                (class, name),
                &by_class,
                &clusters_of,
                &mut summary,
            )?;
        }
        let members = &by_class[&class];
        if job.settings.padding {
            unit.padding = padding_rows(&mut scorer, class, members, &manifest.classes)?;
        }
        if job.settings.aopc {
            unit.aopc = vec![aopc_row(&mut scorer, class, members, &manifest.classes)?];
        }
        units::write_unit(&job.dir, &unit)?;
        summary.units_written += 1;
    }
    summary.images_run = scorer.images_run;
    if units
        .iter()
        .all(|&c| units::unit_path(&job.dir, c).is_file())
    {
        assemble(&job.dir, &units)?;
        summary.complete = true;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The evidence of one tested class: each cluster's region, occlusion and transplant effects.
fn class_evidence(
    scorer: &mut Scorer<'_>,
    (class, name): (i32, &String),
    by_class: &BTreeMap<i32, Vec<Member>>,
    clusters_of: &GroupLabels,
    summary: &mut VerifySummary,
) -> Result<Vec<Evidence>> {
    let job = scorer.job;
    let g = job.grid;
    let [h, w] = job.preprocess.input_size.map(|v| v as usize);
    let mut evidence = Vec::new();
    let Some(members) = by_class.get(&class) else {
        return Ok(evidence);
    };
    // Per space, the analysis' clusters, then the two sides of its two-way split; a group
    // with the same images as one before it (with two clusters the split is the clustering;
    // a concept layer may find the relevance space's group again) is tested once.
    let mut groups: BTreeMap<(FeatureSpace, ClusterLevel, i32), Vec<usize>> = BTreeMap::new();
    for (&(c, image, space), &(cluster, split)) in
        clusters_of.range((class, i64::MIN, FeatureSpace::Relevance)..)
    {
        if c != class {
            break;
        }
        let Some(i) = members.iter().position(|m| m.image_index as i64 == image) else {
            continue;
        };
        groups
            .entry((space, ClusterLevel::Cluster, cluster))
            .or_default()
            .push(i);
        groups
            .entry((space, ClusterLevel::Split, split))
            .or_default()
            .push(i);
    }
    let mut seen: Vec<Vec<usize>> = Vec::new();
    let order: Vec<(FeatureSpace, ClusterLevel, i32)> = {
        let mut keys: Vec<_> = groups.keys().copied().collect();
        // Relevance first, clusters before split sides within a space.
        keys.sort_by_key(|&(space, level, id)| (space, level, id));
        keys
    };
    let mut tested: Vec<((FeatureSpace, ClusterLevel, i32), Vec<usize>)> = Vec::new();
    for key in order {
        let mut idx = groups.remove(&key).unwrap_or_default();
        idx.sort_unstable();
        if !seen.contains(&idx) {
            seen.push(idx.clone());
            tested.push((key, idx));
        }
    }
    let bounds = pixel_bounds(job.preprocess);
    let class_mean = {
        let maps: Vec<&[f32]> = members.iter().map(|m| m.map.as_slice()).collect();
        region::mean(&maps, g * g)
    };
    // Recipients of transplants: other classes' images (one row per image).
    let mut others: Vec<usize> = by_class
        .iter()
        .filter(|(c, _)| **c != class)
        .flat_map(|(_, rows)| rows.iter().map(|m| m.image_index))
        .collect();
    others.sort_unstable();
    others.dedup();
    let others = spread(&others, job.settings.transplant_images);
    let other_tensors: Vec<Vec<f32>> = others
        .iter()
        .map(|&i| load(job, i))
        .collect::<Result<_>>()?;
    let other_before = scorer.logits(&other_tensors)?;

    for ((space, level, cluster), idx) in &tested {
        let (space, level, cluster) = (*space, *level, *cluster);
        if cluster < 0 || idx.len() < job.settings.min_cluster || idx.len() == members.len() {
            continue;
        }
        // A concept-space group's effect averages over its donors' own regions, so few
        // donors make it noisy: 14 donors give a flip rate ± 0.13 (binomial SE), more than a
        // flag's margin (measured: a clean class's 9 % group at 0.36 on the scenario suite).
        if matches!(space, FeatureSpace::Concept(_) | FeatureSpace::Colour)
            && (idx.len() as f64) < job.settings.concept_min_share * members.len() as f64
        {
            continue;
        }
        let rest_idx: Vec<usize> = (0..members.len()).filter(|i| !idx.contains(i)).collect();
        let rest_rows = spread(&rest_idx, job.settings.transplant_images);
        let colour = space == FeatureSpace::Colour;
        // The second transplant control of a relevance-space group (`RegionControl::Both`).
        let mut moved_masks: Option<Vec<Vec<bool>>> = None;
        // What the test changes in an image: for a relevance-space group the cells where its
        // mean map exceeds the rest's (the same pixels in every group image; in the control's
        // images that shape moved to where each one's own relevance is, `RegionControl`);
        // for a concept-space group each image's own cells above its class's mean map
        // (`region::member_region`), for the group's images and, as the control, for the
        // rest's alike; for a colour-space group no region but the colour of the whole image.
        let (cells_text, cell_count, masks, rest_masks) = match space {
            FeatureSpace::Colour => ("colour".to_string(), g * g, Vec::new(), Vec::new()),
            FeatureSpace::Concept(_) => {
                let count = region::member_region_cells(g);
                let own = |i: usize| {
                    region::pixel_mask(
                        &region::member_region(&members[i].map, &class_mean, count),
                        g,
                        h,
                        w,
                    )
                };
                let masks: Vec<Vec<bool>> = idx.iter().map(|&i| own(i)).collect();
                if masks.iter().all(|m| !m.contains(&true)) {
                    continue;
                }
                let rest_masks: Vec<Vec<bool>> = rest_rows.iter().map(|&i| own(i)).collect();
                (
                    format!("per image: top {count} cells"),
                    count,
                    masks,
                    rest_masks,
                )
            }
            _ => {
                let inside: Vec<&[f32]> = idx.iter().map(|&i| members[i].map.as_slice()).collect();
                let rest: Vec<&[f32]> = rest_idx
                    .iter()
                    .map(|&i| members[i].map.as_slice())
                    .collect();
                let cells = region::cluster_region(&inside, &rest, g, job.settings.margin);
                if cells.is_empty() {
                    continue;
                }
                let mask = region::pixel_mask(&cells, g, h, w);
                let moved = || -> Vec<Vec<bool>> {
                    rest_rows
                        .iter()
                        .map(|&i| {
                            let moved = region::best_shift(&cells, &members[i].map, g);
                            region::pixel_mask(&moved, g, h, w)
                        })
                        .collect()
                };
                let same = vec![mask.clone(); rest_rows.len()];
                let rest_masks = match job.settings.control {
                    RegionControl::SamePixels | RegionControl::Both => same,
                    RegionControl::Moved => moved(),
                };
                if job.settings.control == RegionControl::Both {
                    // Only where some image's region really moves is the second batch run.
                    let moved = moved();
                    if moved != rest_masks {
                        moved_masks = Some(moved);
                    }
                }
                (
                    region::describe(&cells, g),
                    cells.len(),
                    vec![mask; idx.len()],
                    rest_masks,
                )
            }
        };
        summary.clusters += 1;

        // The cluster's images, decoded once: occluded, pictured and given from; then (up to
        // transplant_images of) the rest's, the control.
        let donors: Vec<Vec<f32>> = idx
            .iter()
            .map(|&i| load(job, members[i].image_index))
            .collect::<Result<_>>()?;
        let rest_tensors: Vec<Vec<f32>> = rest_rows
            .iter()
            .map(|&i| load(job, members[i].image_index))
            .collect::<Result<_>>()?;
        let donor_colours: Vec<[(f32, f32); 3]> = donors.iter().map(|t| channel_stats(t)).collect();
        let rest_colours: Vec<[(f32, f32); 3]> =
            rest_tensors.iter().map(|t| channel_stats(t)).collect();
        // Occlusion: image k loses its region, or (colour) takes the colours of the rest's
        // image k + shift (shift 1 for the rest itself, so that each takes another's).
        let occlude_all = |originals: &[Vec<f32>], masks: &[Vec<bool>], rows: &[usize], shift| {
            originals
                .iter()
                .enumerate()
                .map(|(k, original)| {
                    let mut t = original.clone();
                    if colour {
                        if !rest_colours.is_empty() {
                            let to = &rest_colours[(k + shift) % rest_colours.len()];
                            transfer_colour(&mut t, to, &bounds);
                        }
                    } else {
                        occlude(
                            &mut t,
                            &masks[k],
                            w,
                            job.settings.fill,
                            job.settings.seed ^ rows[k] as u64,
                        );
                    }
                    t
                })
                .collect::<Vec<_>>()
        };
        let occluded_drop = |scorer: &mut Scorer<'_>,
                             rows: &[usize],
                             tensors: &[Vec<f32>]|
         -> Result<(f64, f64, f64)> {
            let after = scorer.logits(tensors)?;
            let n = rows.len().max(1) as f64;
            let drop = rows
                .iter()
                .zip(&after)
                .map(|(&i, a)| relative_drop(members[i].class_logit, a[class as usize]))
                .sum::<f64>()
                / n;
            let before_acc = rows
                .iter()
                .filter(|&&i| members[i].predicted == class)
                .count() as f64
                / n;
            let after_acc = after
                .iter()
                .filter(|a| spray_engine::argmax(a.iter().copied()) as i32 == class)
                .count() as f64
                / n;
            Ok((drop, before_acc, after_acc))
        };
        let covered = occlude_all(&donors, &masks, idx, 0);
        let (occlusion_drop, accuracy_before, accuracy_after) =
            occluded_drop(scorer, idx, &covered)?;
        // Pictures for the report: the first member before and after occlusion.
        let mut pictures = vec![donors[0].clone(), covered[0].clone()];
        let covered_rest = occlude_all(&rest_tensors, &rest_masks, &rest_rows, 1);
        let (occlusion_drop_rest, _, _) = occluded_drop(scorer, &rest_rows, &covered_rest)?;

        // Transplant: recipient j receives from donor j mod |donors| its region, or its
        // colours.
        let give = |from: &[Vec<f32>], from_masks: &[Vec<bool>], colours: &[[(f32, f32); 3]]| {
            other_tensors
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    let mut t = t.clone();
                    let d = j % from.len();
                    if colour {
                        transfer_colour(&mut t, &colours[d], &bounds);
                    } else {
                        paste(&mut t, &from[d], &from_masks[d]);
                    }
                    t
                })
                .collect::<Vec<_>>()
        };
        let pasted = give(&donors, &masks, &donor_colours);
        if let (Some(before), Some(after)) = (other_tensors.first(), pasted.first()) {
            pictures.push(before.clone());
            pictures.push(after.clone());
        }
        let mut example_files = Vec::new();
        for (kind, tensor) in examples::KINDS.iter().zip(&pictures) {
            let path = examples::example_path(&job.dir, class, space, level, cluster, kind);
            examples::write_png(&path, &examples::to_rgb(tensor, job.preprocess, h, w))?;
            if let Ok(rel) = path.strip_prefix(&job.dir) {
                example_files.push(rel.display().to_string());
            }
        }
        let after = scorer.logits(&pasted)?;
        let k = class as usize;
        let gain = other_before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a[k] - b[k]) as f64)
            .sum::<f64>()
            / others.len().max(1) as f64;
        let eligible: Vec<usize> = (0..others.len())
            .filter(|&j| spray_engine::argmax(other_before[j].iter().copied()) != k)
            .collect();
        let flipped = eligible
            .iter()
            .filter(|&&j| spray_engine::argmax(after[j].iter().copied()) == k)
            .count();
        // The control: the same region (or colours) from the class's other images. A region
        // that shows the class's object flips recipients whichever member it comes from; a
        // shortcut the cluster shares flips them only when it comes from the cluster.
        // With `RegionControl::Both` the same-shaped region is also taken where each of the
        // rest's images holds its own relevance, and the stronger control counts.
        let mut flip_rate_rest = 0.0f64;
        if !rest_tensors.is_empty() {
            for control_masks in std::iter::once(&rest_masks).chain(moved_masks.as_ref()) {
                let pasted_rest = give(&rest_tensors, control_masks, &rest_colours);
                let after_rest = scorer.logits(&pasted_rest)?;
                let rate = eligible
                    .iter()
                    .filter(|&&j| spray_engine::argmax(after_rest[j].iter().copied()) == k)
                    .count() as f64
                    / eligible.len().max(1) as f64;
                flip_rate_rest = flip_rate_rest.max(rate);
            }
        }
        evidence.push(Evidence {
            class_index: class,
            class_name: name.clone(),
            space,
            level,
            cluster,
            size: idx.len(),
            share: idx.len() as f64 / members.len() as f64,
            region: cells_text,
            region_cells: cell_count,
            grid: g,
            occlusion_drop,
            occlusion_drop_rest,
            accuracy_before,
            accuracy_after,
            transplant_logit_gain: gain,
            transplant_flip_rate: flipped as f64 / eligible.len().max(1) as f64,
            transplant_flip_rate_rest: flip_rate_rest,
            transplant_images: others.len(),
            examples: example_files,
        });
    }
    Ok(evidence)
}

/// Read every unit (in class order) and write the tables; `evidence.csv` last.
fn assemble(dir: &Path, units: &[i32]) -> Result<()> {
    let mut evidence = Vec::new();
    let mut padding = Vec::new();
    let mut aopc = Vec::new();
    for &class in units {
        let unit = units::read_unit(dir, class)?;
        evidence.extend(unit.evidence);
        padding.extend(unit.padding);
        aopc.extend(unit.aopc);
    }
    // Strongest evidence first: what only the cluster's region does (flip rate beyond the
    // control), then the occlusion contrast.
    let specific = |e: &Evidence| e.transplant_flip_rate - e.transplant_flip_rate_rest;
    evidence.sort_by(|a, b| {
        specific(b)
            .total_cmp(&specific(a))
            .then(
                (b.occlusion_drop - b.occlusion_drop_rest)
                    .total_cmp(&(a.occlusion_drop - a.occlusion_drop_rest)),
            )
            .then(a.class_index.cmp(&b.class_index))
            .then(a.space.cmp(&b.space))
            .then(a.level.cmp(&b.level))
            .then(a.cluster.cmp(&b.cluster))
    });
    write_tables(dir, &padding, &aopc)?;
    write_evidence(&evidence_path(dir), &evidence)
}

fn class_name(classes: &[String], class: i32) -> String {
    classes
        .get(class as usize)
        .cloned()
        .unwrap_or_else(|| format!("class {class}"))
}

/// Per class: `table_images` images under the pipeline's preprocessing and under each of the
/// six square modes (on square images every mode is the identity: changes are then zero).
fn padding_rows(
    scorer: &mut Scorer<'_>,
    class: i32,
    members: &[Member],
    classes: &[String],
) -> Result<Vec<PaddingEffect>> {
    let job = scorer.job;
    let mut rows = Vec::new();
    {
        let chosen = spread(
            &members.iter().map(|m| m.image_index).collect::<Vec<_>>(),
            job.settings.table_images,
        );
        let k = class as usize;
        let base: Vec<Vec<f32>> = chosen
            .iter()
            .map(|&i| load(job, i))
            .collect::<Result<_>>()?;
        let base = scorer.logits(&base)?;
        let accuracy = |logits: &[Vec<f32>]| {
            logits
                .iter()
                .filter(|l| spray_engine::argmax(l.iter().copied()) == k)
                .count() as f64
                / logits.len().max(1) as f64
        };
        let accuracy_baseline = accuracy(&base);
        for mode in SQUARE_MODES {
            let mut pre = job.preprocess.clone();
            pre.square = mode;
            let tensors: Vec<Vec<f32>> = chosen
                .iter()
                .map(|&i| load_with(job, &pre, i))
                .collect::<Result<_>>()?;
            let after = scorer.logits(&tensors)?;
            let change = base
                .iter()
                .zip(&after)
                .map(|(b, a)| (a[k] - b[k]) as f64)
                .sum::<f64>()
                / chosen.len().max(1) as f64;
            rows.push(PaddingEffect {
                class_index: class,
                class_name: class_name(classes, class),
                mode,
                images: chosen.len(),
                logit_change: change,
                accuracy: accuracy(&after),
                accuracy_baseline,
            });
        }
    }
    Ok(rows)
}

/// Region perturbation (thesis Ch. 3): grid cells removed cumulatively (filled with the image's
/// mean colour), most relevant first (MoRF) or in a seeded random order;
/// AOPC = 1/(L+1) Σ_{k=0..L} (f(x) − f(x_k)), averaged over the class's images. A faithful
/// heatmap makes the MoRF curve fall faster: AOPC(MoRF) > AOPC(random).
fn aopc_row(
    scorer: &mut Scorer<'_>,
    class: i32,
    members: &[Member],
    classes: &[String],
) -> Result<Aopc> {
    let job = scorer.job;
    let g = job.grid;
    let [h, w] = job.preprocess.input_size.map(|v| v as usize);
    let steps = job.settings.aopc_steps.min(g * g);
    {
        let k = class as usize;
        let chosen = spread(
            &(0..members.len()).collect::<Vec<_>>(),
            job.settings.table_images,
        );
        let mut sums = [0.0f64; 2];
        for &i in &chosen {
            let m = &members[i];
            let original = load(job, m.image_index)?;
            let mut morf: Vec<usize> = (0..g * g).collect();
            morf.sort_by(|&a, &b| m.map[b].total_cmp(&m.map[a]).then(a.cmp(&b)));
            let mut random: Vec<usize> = (0..g * g).collect();
            let mut state = job.settings.seed ^ (m.image_index as u64).wrapping_mul(0x9E37_79B9);
            for j in (1..random.len()).rev() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                random.swap(j, ((state >> 33) as usize) % (j + 1));
            }
            for (o, order) in [morf, random].iter().enumerate() {
                // x_0 … x_L: k cells removed.
                let tensors: Vec<Vec<f32>> = (0..=steps)
                    .map(|s| {
                        let mut t = original.clone();
                        if s > 0 {
                            let mask = region::pixel_mask(&order[..s], g, h, w);
                            occlude(&mut t, &mask, w, Fill::Mean, 0);
                        }
                        t
                    })
                    .collect();
                let logits = scorer.logits(&tensors)?;
                let f0 = logits[0][k] as f64;
                sums[o] +=
                    logits.iter().map(|l| f0 - l[k] as f64).sum::<f64>() / (steps + 1) as f64;
            }
        }
        let n = chosen.len().max(1) as f64;
        Ok(Aopc {
            class_index: class,
            class_name: class_name(classes, class),
            composite: job.composite.clone(),
            images: chosen.len(),
            steps,
            aopc_morf: sums[0] / n,
            aopc_random: sums[1] / n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_order_and_the_limit() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&v, 4), vec![0, 2, 5, 7]);
        assert_eq!(spread(&v, 20), v);
        assert!((relative_drop(10.0, 2.0) - 0.8).abs() < 1e-12);
    }
}

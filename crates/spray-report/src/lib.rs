//! Stage 4: the reviewer's report. CSV tables (built with polars) and one self-contained HTML
//! page (minijinja template, plotters SVG charts, inline PNG heatmaps; nothing fetched).
//!
//! Everything that comes from data (class names, paths, sample ids) reaches the page through
//! the template's HTML auto-escaping, the HTML-safe `tojson` filter, or plotters' own XML
//! escaping; the page's script only ever writes it with `textContent`.

mod charts;
pub mod detection;
mod error;
mod evidence;
mod images;
mod space_wording;
mod tables;
#[cfg(test)]
mod test_fixtures;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::relevance::{self as rel, ConceptLayerInfo, ReadOptions, RelevanceRecord};

pub use charts::cluster_css;
pub use error::{ReportError, Result};
pub use images::heatmap;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Page title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Classes with a detailed section (the top of the ranking).
    #[serde(default = "default_detail")]
    pub detail_classes: usize,
    /// Per class, samples whose thumbnail and heatmap are embedded for the scatter plot's
    /// preview (the most central of each cluster first); bounds the page size.
    #[serde(default = "default_examples")]
    pub examples_per_class: usize,
    /// Most central samples shown per cluster.
    #[serde(default = "default_montage")]
    pub montage: usize,
    /// Eigenvalues per class in the overview chart (thesis Fig 6.5 uses 5).
    #[serde(default = "default_overview")]
    pub overview_eigenvalues: usize,
}

fn default_title() -> String {
    "spray report".into()
}
fn default_detail() -> usize {
    30
}
fn default_examples() -> usize {
    30
}
fn default_montage() -> usize {
    8
}
fn default_overview() -> usize {
    5
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            title: default_title(),
            detail_classes: default_detail(),
            examples_per_class: default_examples(),
            montage: default_montage(),
            overview_eigenvalues: default_overview(),
        }
    }
}

pub struct ReportJob<'a> {
    pub relevance_dir: PathBuf,
    pub analysis_dir: PathBuf,
    /// `<out>/report`.
    pub dir: PathBuf,
    pub settings: &'a ReportSettings,
    /// `<out>/verify`, when the verify stage ran: its evidence is shown per class.
    pub verify_dir: Option<PathBuf>,
    /// Facts about the run shown at the top of the page (label, value).
    pub run_info: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub index: PathBuf,
    pub classes: usize,
    /// (class name, analysis score, specific transplant effect when verified) in rank order.
    pub ranking: Vec<(String, f64, Option<f64>)>,
    pub flagged: Vec<String>,
    pub html_bytes: usize,
}

pub use spray_store::ranking::{flag, rank, rank_with_evidence, RankedClass};

/// The space whose analysis the page draws (scatter plots, cluster cards, samples.csv,
/// clusters.csv) and in which `spray evaluate` counts a class's images: every analysed image
/// is in it once per class.
const PRIMARY_SPACE: spray_store::FeatureSpace = spray_store::FeatureSpace::Relevance;

#[derive(Serialize)]
struct PagePoint {
    id: String,
    path: String,
    cluster: i32,
    /// Rounded to 4 decimals: the page shows 3.
    logit: f64,
    predicted: String,
    labels: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumb: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heat: Option<String>,
}

#[derive(Serialize)]
struct PageExample {
    id: String,
    path: String,
    thumb: Option<String>,
    heat: Option<String>,
}

#[derive(Serialize)]
struct PageCluster {
    id: i32,
    colour: String,
    size: usize,
    share: String,
    prototype: Option<String>,
    /// The verify stage's region for this cluster, outlined over the prototype.
    region_svg: Option<String>,
    examples: Vec<PageExample>,
}

#[derive(Serialize)]
struct PageClass {
    rank: usize,
    anchor: String,
    name: String,
    n: i64,
    estimated: i32,
    clusters_used: i32,
    gap_index: i32,
    spectrum_svg: String,
    baseline_svg: Option<String>,
    scatter_svg: String,
    /// The folder all of the class's paths start with; points carry the rest.
    path_prefix: String,
    points: Vec<PagePoint>,
    clusters: Vec<PageCluster>,
    evidence: Vec<evidence::PageEvidence>,
    evidence_sentence: Option<String>,
    /// Why the class ranks where it does (its strongest cluster's contrast).
    why: String,
    flagged: bool,
}

#[derive(Serialize)]
struct PageRow {
    rank: usize,
    flagged: bool,
    anchor: Option<String>,
    name: String,
    class_index: i32,
    n: i64,
    lambda2: String,
    largest_gap: String,
    gap_index: i32,
    estimated: i32,
    clusters: i32,
    near_zero: i32,
    score: String,
    /// The strongest cluster by the contrast criterion: label, share, separation, shift.
    contrast_cluster: String,
    separation: String,
    magnitude_shift: String,
    /// One sentence: why the class is (or is not) flagged.
    why: String,
    baseline_lambda2: String,
    baseline_gap: String,
    /// The strongest transplant flip rate of the class's clusters (verify stage).
    flip_rate: String,
    /// flip rate − control of the class's strongest cluster (verify stage).
    verified_effect: String,
}

#[derive(Serialize)]
struct PageError {
    path: String,
    reason: String,
}

/// The longest common prefix of the strings that ends at a `/` (so a path is never cut
/// inside a name).
fn common_prefix<'a>(mut items: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = items.next() else {
        return String::new();
    };
    let mut len = first.len();
    for s in items {
        len = first
            .bytes()
            .zip(s.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    match first[..len].rfind('/') {
        Some(i) => first[..=i].to_owned(),
        None => String::new(),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    spray_store::write_atomically(path, bytes).map_err(ReportError::from)
}

fn contrast_label(c: &spray_store::analysis::ClusterContrast) -> String {
    if c.cluster < 0 {
        String::new()
    } else {
        format!("{} ({:.0}%)", c.cluster, 100.0 * c.share)
    }
}

/// Why a class ranks and is flagged as it is: the verify stage's evidence when it tested the
/// class, then its strongest cluster in the analysis (`ClusterContrast`).
fn why_sentence(r: &RankedClass, concept_layers: &[ConceptLayerInfo]) -> String {
    let spectral = spectral_reason(&r.spectrum);
    match r.evidence {
        Some(e) => {
            let words = space_wording::wording(e.space, concept_layers);
            format!(
                "tested by the verify stage: {}{}'s {} {:.0}% of other classes' images into \
                 this class, {:.0}% more than the same from the class's other images ({} the \
                 {:.0}% that flags a class); in the analysis, {spectral}",
                spray_store::verify::group_label(e.space, e.level, e.cluster),
                words.group_note,
                words.transferred,
                100.0 * e.flip_rate,
                100.0 * e.specific(),
                if e.specific() >= spray_store::ranking::FLAG_SPECIFIC_EFFECT {
                    "at least"
                } else {
                    "below"
                },
                100.0 * spray_store::ranking::FLAG_SPECIFIC_EFFECT
            )
        }
        None => format!("not tested by the verify stage; in the analysis, {spectral}"),
    }
}

/// The analysis' reason: the class's strongest cluster by the contrast criterion.
fn spectral_reason(s: &spray_store::analysis::ClassSpectrum) -> String {
    let c = &s.contrast;
    if c.cluster < 0 {
        return "no cluster of at least 5% of the class to compare".into();
    }
    let ratio = |shift: f64| {
        if shift >= 0.0 {
            "more"
        } else {
            "less"
        }
    };
    let cut = if c.separation >= spray_store::ranking::FLAG_SEPARATION {
        format!(
            "cluster {} ({:.0}% of the maps) is cut off from the rest ({:.0}% of its kNN edges stay inside)",
            c.cluster,
            100.0 * c.share,
            100.0 * c.separation
        )
    } else {
        format!(
            "no cluster is cut off (the best, cluster {}, keeps {:.0}% of its kNN edges inside)",
            c.cluster,
            100.0 * c.separation
        )
    };
    let mass = if c.magnitude_shift.abs() >= spray_store::ranking::FLAG_MAGNITUDE_SHIFT {
        format!(
            "its maps carry {} relevance than the rest ({:+.2} SD of log mass): the model answers \
             these images with a different strength of evidence",
            ratio(c.magnitude_shift),
            c.magnitude_shift
        )
    } else {
        format!(
            "its maps carry about as much relevance as the rest ({:+.2} SD of log mass), as \
             natural modes of a class do",
            c.magnitude_shift
        )
    };
    format!("{cut}; {mass}")
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

/// Build the report.
pub fn run(job: &ReportJob<'_>) -> Result<ReportSummary> {
    let settings = job.settings;
    let (spectra, samples) = spray_store::analysis::read_all(&job.analysis_dir)?;
    let (manifest, parts) = rel::finished_parts(&job.relevance_dir)?;
    let options = ReadOptions {
        grids: Vec::new(),
        map: manifest.layout.store_map,
        images: manifest.layout.store_images,
        concept: false,
        colour: false,
    };
    let concept_layers = manifest.layout.concept_layers.as_slice();
    let mut records: HashMap<(i64, i32), RelevanceRecord> = HashMap::new();
    let mut errors = Vec::new();
    for part in &parts {
        for r in rel::read_part(part, &options)? {
            records.insert((r.image_index, r.class_index), r);
        }
    }
    for p in 0..manifest.parts {
        let path = rel::errors_path(&job.relevance_dir, p);
        if path.is_file() {
            errors.extend(rel::read_errors(&path)?);
        }
    }
    let evidence = evidence::read(job.verify_dir.as_deref())?;
    let all_evidence: Vec<evidence::EvidenceRow> = evidence.values().flatten().cloned().collect();
    let ranking = rank_with_evidence(&spectra, &all_evidence);
    std::fs::create_dir_all(&job.dir).map_err(|source| ReportError::CreateDir {
        path: job.dir.clone(),
        source,
    })?;

    // CSV tables.
    let relevance_samples: Vec<&SampleEmbedding> = samples
        .iter()
        .filter(|s| s.space == PRIMARY_SPACE)
        .collect();
    tables::write_classes(&job.dir.join("classes.csv"), &ranking)?;
    tables::write_samples(
        &job.dir.join("samples.csv"),
        &relevance_samples,
        &records,
        &manifest.classes,
    )?;
    tables::write_clusters(&job.dir.join("clusters.csv"), &ranking, &relevance_samples)?;

    // The page.
    let class_name = |i: i32| -> String {
        usize::try_from(i)
            .ok()
            .and_then(|i| manifest.classes.get(i))
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    let detail: Vec<&RankedClass> = ranking.iter().take(settings.detail_classes).collect();
    let anchor = |c: i32| format!("class-{}", spray_store::analysis::group_name(c));
    let flagged = flag(&ranking);
    let rows: Vec<PageRow> = ranking
        .iter()
        .map(|r| PageRow {
            rank: r.rank,
            flagged: spray_store::ranking::is_flagged_ranked(r),
            anchor: (r.rank <= settings.detail_classes).then(|| anchor(r.spectrum.class_index)),
            name: r.spectrum.class_name.clone(),
            class_index: r.spectrum.class_index,
            n: r.spectrum.n,
            lambda2: fmt(r.spectrum.lambda2),
            largest_gap: fmt(r.spectrum.largest_gap),
            gap_index: r.spectrum.largest_gap_index,
            estimated: r.spectrum.estimated_clusters,
            clusters: r.spectrum.clusters,
            near_zero: r.spectrum.near_zero,
            score: fmt(r.spectrum.score),
            contrast_cluster: contrast_label(&r.spectrum.contrast),
            separation: fmt(r.spectrum.contrast.separation),
            magnitude_shift: format!("{:+.2}", r.spectrum.contrast.magnitude_shift),
            why: why_sentence(r, concept_layers),
            baseline_lambda2: r
                .baseline
                .as_ref()
                .map(|b| fmt(b.lambda2))
                .unwrap_or_default(),
            baseline_gap: r
                .baseline
                .as_ref()
                .map(|b| fmt(b.largest_gap))
                .unwrap_or_default(),
            flip_rate: evidence::best_flip(
                evidence
                    .get(&r.spectrum.class_index)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            ),
            verified_effect: r
                .evidence
                .map(|e| format!("{:+.0}%", 100.0 * e.specific()))
                .unwrap_or_default(),
        })
        .collect();

    let mut by_lambda2: Vec<&RankedClass> = ranking.iter().collect();
    by_lambda2.sort_by(|a, b| a.spectrum.lambda2.total_cmp(&b.spectrum.lambda2));
    let k = settings.overview_eigenvalues;
    let overview = charts::overview_svg(
        "Smallest eigenvalues per class (relevance), ordered by λ2",
        &by_lambda2
            .iter()
            .map(|r| {
                (
                    r.spectrum.class_name.clone(),
                    r.spectrum.eigenvalues.clone(),
                )
            })
            .collect::<Vec<_>>(),
        k,
    )?;
    let overview_baseline = if ranking.iter().any(|r| r.baseline.is_some()) {
        let mut with: Vec<&ClassSpectrum> =
            ranking.iter().filter_map(|r| r.baseline.as_ref()).collect();
        with.sort_by(|a, b| a.lambda2.total_cmp(&b.lambda2));
        Some(charts::overview_svg(
            "Baseline: the same on downsized input images",
            &with
                .iter()
                .map(|s| (s.class_name.clone(), s.eigenvalues.clone()))
                .collect::<Vec<_>>(),
            k,
        )?)
    } else {
        None
    };

    let mut grouped: BTreeMap<i32, Vec<&SampleEmbedding>> = BTreeMap::new();
    for s in &relevance_samples {
        grouped.entry(s.class_index).or_default().push(s);
    }
    let mut classes = Vec::new();
    let mut pictures = images::Pictures::default();
    for r in &detail {
        let c = r.spectrum.class_index;
        let members = grouped.get(&c).cloned().unwrap_or_default();
        let record = |s: &SampleEmbedding| records.get(&(s.image_index, c));

        // Which samples get pictures: the most central of each cluster first, round robin,
        // up to the budget.
        let mut clusters_of: BTreeMap<i32, Vec<&SampleEmbedding>> = BTreeMap::new();
        for s in &members {
            clusters_of.entry(s.cluster).or_default().push(s);
        }
        for list in clusters_of.values_mut() {
            list.sort_by(|a, b| {
                a.centrality
                    .total_cmp(&b.centrality)
                    .then(a.image_index.cmp(&b.image_index))
            });
        }
        let mut pictured: std::collections::HashSet<i64> = Default::default();
        let mut depth = 0;
        while pictured.len() < settings.examples_per_class.min(members.len()) {
            let mut added = false;
            for list in clusters_of.values() {
                if let Some(s) = list.get(depth) {
                    if pictured.len() < settings.examples_per_class {
                        pictured.insert(s.image_index);
                        added = true;
                    }
                }
            }
            if !added {
                break;
            }
            depth += 1;
        }

        // Paths share the dataset's folder: send it once per class.
        let prefix = common_prefix(members.iter().map(|s| s.path.as_str()));
        let points: Vec<PagePoint> = members
            .iter()
            .map(|s| {
                let rec = record(s);
                let show = pictured.contains(&s.image_index);
                PagePoint {
                    id: s.sample_id.clone(),
                    path: s.path[prefix.len()..].to_owned(),
                    cluster: s.cluster,
                    logit: rec
                        .map(|r| (r.target_logit as f64 * 1e4).round() / 1e4)
                        .unwrap_or(f64::NAN),
                    predicted: rec
                        .map(|r| class_name(r.predicted_class))
                        .unwrap_or_default(),
                    labels: rec
                        .map(|r| {
                            r.labels
                                .iter()
                                .map(|&l| class_name(l))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default(),
                    thumb: if show {
                        rec.and_then(|r| pictures.thumbnail(r))
                    } else {
                        None
                    },
                    heat: if show {
                        rec.and_then(|r| pictures.heatmap(r))
                    } else {
                        None
                    },
                }
            })
            .collect();
        let scatter = charts::scatter_svg(
            "t-SNE of the relevance maps, coloured by cluster",
            &members
                .iter()
                .map(|s| (s.tsne_x, s.tsne_y, s.cluster))
                .collect::<Vec<_>>(),
        )?;
        let n = members.len().max(1);
        let mut page_clusters = Vec::new();
        let class_evidence = evidence.get(&c).map(Vec::as_slice).unwrap_or_default();
        for (&id, list) in &clusters_of {
            {
                // Prototype: the mean of the members' maps (all share one size).
                let maps: Vec<&(i32, i32, Vec<f32>)> = list
                    .iter()
                    .filter_map(|s| record(s).and_then(|r| r.map.as_ref()))
                    .collect();
                let region_svg = maps.first().and_then(|(h, w, _)| {
                    evidence::cluster_region_svg(class_evidence, id, *h as usize, *w as usize)
                });
                let prototype = maps.first().map(|(h, w, first)| {
                    let mut mean = vec![0.0f32; first.len()];
                    for (_, _, m) in &maps {
                        for (a, v) in mean.iter_mut().zip(m) {
                            *a += v / maps.len() as f32;
                        }
                    }
                    images::png_data_uri(&images::heatmap(&mean, *h as usize, *w as usize, 1))
                });
                let examples = list
                    .iter()
                    .take(settings.montage)
                    .map(|s| {
                        let rec = record(s);
                        PageExample {
                            id: s.sample_id.clone(),
                            path: s.path.clone(),
                            thumb: rec.and_then(|r| pictures.thumbnail(r)),
                            heat: rec.and_then(|r| pictures.heatmap(r)),
                        }
                    })
                    .collect();
                page_clusters.push(PageCluster {
                    id,
                    colour: charts::cluster_css(id),
                    size: list.len(),
                    share: format!("{:.1}%", 100.0 * list.len() as f64 / n as f64),
                    prototype,
                    region_svg,
                    examples,
                });
            }
        }
        classes.push(PageClass {
            evidence: evidence::page_rows(class_evidence),
            evidence_sentence: evidence::sentence(class_evidence, concept_layers),
            why: why_sentence(r, concept_layers),
            flagged: spray_store::ranking::is_flagged_ranked(r),
            rank: r.rank,
            anchor: anchor(c),
            name: r.spectrum.class_name.clone(),
            n: r.spectrum.n,
            estimated: r.spectrum.estimated_clusters,
            clusters_used: r.spectrum.clusters,
            gap_index: r.spectrum.largest_gap_index,
            spectrum_svg: charts::spectrum_svg(
                "Eigenvalues of L_sym (relevance maps)",
                &r.spectrum.eigenvalues,
                r.spectrum.largest_gap_index,
            )?,
            baseline_svg: r
                .baseline
                .as_ref()
                .map(|b| {
                    charts::spectrum_svg(
                        "Baseline: eigenvalues on input images",
                        &b.eigenvalues,
                        b.largest_gap_index,
                    )
                })
                .transpose()?,
            scatter_svg: scatter,
            path_prefix: prefix,
            points,
            clusters: page_clusters,
        });
    }

    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("../templates/report.html"))
        .map_err(ReportError::Template)?;
    let template = env
        .get_template("report.html")
        .map_err(ReportError::Template)?;
    let html = template
        .render(minijinja::context! {
            title => &settings.title,
            run_info => &job.run_info,
            rows => rows,
            overview_svg => overview,
            overview_baseline_svg => overview_baseline,
            classes => classes,
            detail_classes => settings.detail_classes,
            total_classes => ranking.len(),
            has_evidence => !evidence.is_empty(),
            samples => relevance_samples.len(),
            images => pictures.into_map(),
            errors => errors.iter().take(200).map(|e| PageError { path: e.path.clone(), reason: e.reason.clone() }).collect::<Vec<_>>(),
            error_count => errors.len(),
        })
        .map_err(ReportError::Template)?;
    let index = job.dir.join("index.html");
    write_file(&index, html.as_bytes())?;
    Ok(ReportSummary {
        index,
        classes: ranking.len(),
        ranking: ranking
            .iter()
            .map(|r| {
                (
                    r.spectrum.class_name.clone(),
                    r.spectrum.score,
                    r.evidence.map(|e| e.specific()),
                )
            })
            .collect(),
        flagged,
        html_bytes: html.len(),
    })
}

//! Stage 4: the reviewer's report. CSV tables (built with polars) and one self-contained HTML
//! page (minijinja template, plotters SVG charts, inline PNG heatmaps; nothing fetched).
//!
//! Everything that comes from data (class names, paths, sample ids) reaches the page through
//! the template's HTML auto-escaping, the HTML-safe `tojson` filter, or plotters' own XML
//! escaping; the page's script only ever writes it with `textContent`.
//!
//! [`run`] in steps, one file each:
//! - `inputs`: the stage tables (analysis, relevance records and errors, verify evidence);
//! - the ranking: `spray_store::ranking::rank_with_evidence`;
//! - `tables`: classes.csv, samples.csv, clusters.csv;
//! - `overview`: the ranking table's rows and the overview charts;
//! - `class_page`: a detailed class's section, with `examples` (which images it pictures),
//!   `charts`, `images` and `evidence` (the verify stage's rows and sentence);
//! - `reasons` and `space_wording`: the sentences, and every word that depends on a group's
//!   feature space;
//! - `render`: the template filled in.
//!
//! [`detection`] is `spray evaluate`: the same ranking scored against a scenario's truth.

mod charts;
mod class_page;
pub mod detection;
mod error;
mod evidence;
mod examples;
mod images;
mod inputs;
mod overview;
mod reasons;
mod render;
mod settings;
mod space_wording;
mod tables;
#[cfg(test)]
mod test_fixtures;

use std::collections::BTreeMap;
use std::path::PathBuf;

use spray_store::analysis::SampleEmbedding;
use spray_store::FeatureSpace;

pub use charts::cluster_css;
pub use error::{ReportError, Result};
pub use images::heatmap;
pub use settings::ReportSettings;
pub use spray_store::ranking::{flag, rank, rank_with_evidence, RankedClass};

use inputs::StageTables;

/// The space whose analysis the page draws (scatter plots, cluster cards, samples.csv,
/// clusters.csv) and in which `spray evaluate` counts a class's images: every analysed image
/// is in it once per class.
const PRIMARY_SPACE: FeatureSpace = FeatureSpace::Relevance;

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

/// Build the report.
pub fn run(job: &ReportJob<'_>) -> Result<ReportSummary> {
    let tables = StageTables::load(job)?;
    let ranking = rank_with_evidence(&tables.spectra, &tables.all_evidence());
    std::fs::create_dir_all(&job.dir).map_err(|source| ReportError::CreateDir {
        path: job.dir.clone(),
        source,
    })?;
    tables::write_all(&job.dir, &ranking, &tables)?;
    let html = render::render(page(job, &tables, &ranking)?)?;
    let index = job.dir.join("index.html");
    spray_store::write_atomically(&index, html.as_bytes())?;
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
        flagged: flag(&ranking),
        html_bytes: html.len(),
    })
}

/// The page's data: the overview of every class, and a section for each of the top
/// `detail_classes`.
fn page<'a>(
    job: &'a ReportJob<'_>,
    tables: &'a StageTables,
    ranking: &[RankedClass],
) -> Result<render::Page<'a>> {
    let settings = job.settings;
    let mut by_class: BTreeMap<i32, Vec<&SampleEmbedding>> = BTreeMap::new();
    for s in &tables.samples {
        by_class.entry(s.class_index).or_default().push(s);
    }
    let mut pictures = images::Pictures::default();
    let classes = ranking
        .iter()
        .take(settings.detail_classes)
        .map(|r| {
            let members = by_class
                .get(&r.spectrum.class_index)
                .map(Vec::as_slice)
                .unwrap_or_default();
            class_page::class_page(r, members, tables, settings, &mut pictures)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(render::Page {
        settings,
        run_info: &job.run_info,
        rows: overview::ranking_rows(ranking, tables, settings.detail_classes),
        overview: overview::overview_charts(ranking, settings.overview_eigenvalues)?,
        classes,
        has_evidence: !tables.evidence.is_empty(),
        samples: tables.samples.len(),
        images: pictures.into_map(),
        errors: &tables.errors,
    })
}

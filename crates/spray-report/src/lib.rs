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
//! [`detection`] is `spray evaluate`: the same ranking scored against a scenario's truth;
//! [`virelay`] is `spray export virelay`: the run as a ViRelAy project.

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
pub mod virelay;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
    /// `<out>/report/index.html`.
    pub index: PathBuf,
    pub classes: usize,
    /// (class name, analysis score, specific transplant effect when verified) in rank order.
    pub ranking: Vec<(String, f64, Option<f64>)>,
    pub flagged: Vec<String>,
    /// The index page's size.
    pub html_bytes: usize,
    /// Class pages written (`<out>/report/classes/`), and the largest one's size.
    pub class_pages: usize,
    pub largest_class_page_bytes: usize,
}

/// Build the report: the CSV tables, a page per detailed class, then the index.
pub fn run(job: &ReportJob<'_>) -> Result<ReportSummary> {
    let tables = StageTables::load(job)?;
    let ranking = rank_with_evidence(&tables.spectra, &tables.all_evidence());
    let pages_dir = job.dir.join(class_page::PAGES_DIR);
    std::fs::create_dir_all(&pages_dir).map_err(|source| ReportError::CreateDir {
        path: pages_dir.clone(),
        source,
    })?;
    tables::write_all(&job.dir, &ranking, &tables)?;
    let pages = render::Pages::new()?;
    let (class_pages, largest_class_page_bytes) =
        write_class_pages(job, &pages, &tables, &ranking, &pages_dir)?;
    let html = pages.index(render::IndexPage {
        settings: job.settings,
        run_info: &job.run_info,
        rows: overview::ranking_rows(&ranking, &tables, job.settings.class_pages(ranking.len())),
        overview: overview::overview_charts(&ranking, job.settings.overview_eigenvalues)?,
        has_evidence: !tables.evidence.is_empty(),
        samples: tables.samples.len(),
        errors: &tables.errors,
    })?;
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
        class_pages,
        largest_class_page_bytes,
    })
}

/// One page for each of the top `detail_classes` (every class by default), each with its own pictures, built, written
/// and dropped one at a time, so memory holds one class's pictures. Pages of an earlier run
/// that this one does not write are removed: no stale page survives beside the new index.
/// Returns the number of pages and the largest one's size.
fn write_class_pages(
    job: &ReportJob<'_>,
    pages: &render::Pages,
    tables: &StageTables,
    ranking: &[RankedClass],
    pages_dir: &Path,
) -> Result<(usize, usize)> {
    let settings = job.settings;
    let mut by_class: BTreeMap<i32, Vec<&SampleEmbedding>> = BTreeMap::new();
    for s in &tables.samples {
        by_class.entry(s.class_index).or_default().push(s);
    }
    let detailed = &ranking[..settings.class_pages(ranking.len())];
    let mut largest = 0;
    let mut written = BTreeSet::new();
    for (i, r) in detailed.iter().enumerate() {
        let members = by_class
            .get(&r.spectrum.class_index)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut pictures = images::Pictures::default();
        let class = class_page::class_page(r, members, tables, settings, &mut pictures)?;
        let html = pages.class(render::ClassPage {
            settings,
            class: &class,
            total_classes: ranking.len(),
            previous: i.checked_sub(1).map(|p| &detailed[p]),
            next: detailed.get(i + 1),
            images: pictures.into_map(),
        })?;
        let file = class_page::page_file(r.spectrum.class_index);
        spray_store::write_atomically(&pages_dir.join(&file), html.as_bytes())?;
        largest = largest.max(html.len());
        written.insert(std::ffi::OsString::from(file));
    }
    remove_stale_pages(pages_dir, &written)?;
    Ok((written.len(), largest))
}

/// Removes the `.html` files in `pages_dir` that are not in `keep`.
fn remove_stale_pages(pages_dir: &Path, keep: &BTreeSet<std::ffi::OsString>) -> Result<()> {
    let entries = std::fs::read_dir(pages_dir).map_err(|source| ReportError::StalePage {
        path: pages_dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let stale =
            path.extension().is_some_and(|e| e == "html") && !keep.contains(&entry.file_name());
        if stale {
            std::fs::remove_file(&path).map_err(|source| ReportError::StalePage {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

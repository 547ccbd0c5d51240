//! The page: the template (templates/report.html) filled with the page data.

use std::collections::BTreeMap;

use serde::Serialize;
use spray_store::relevance::ErrorRecord;

use crate::class_page::PageClass;
use crate::overview::{OverviewCharts, PageRow};
use crate::{ReportError, ReportSettings, Result};

/// Skipped inputs listed on the page; the rest are counted.
const ERRORS_LISTED: usize = 200;

/// Everything the template shows.
pub(crate) struct Page<'a> {
    pub settings: &'a ReportSettings,
    pub run_info: &'a [(String, String)],
    pub rows: Vec<PageRow>,
    pub overview: OverviewCharts,
    pub classes: Vec<PageClass>,
    pub has_evidence: bool,
    /// Analysed samples (of the page's space).
    pub samples: usize,
    /// The pictures, by the key the page data refers to them with.
    pub images: BTreeMap<String, String>,
    pub errors: &'a [ErrorRecord],
}

#[derive(Serialize)]
struct PageError<'a> {
    path: &'a str,
    reason: &'a str,
}

pub(crate) fn render(page: Page<'_>) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("../templates/report.html"))
        .map_err(ReportError::Template)?;
    let template = env
        .get_template("report.html")
        .map_err(ReportError::Template)?;
    let total_classes = page.rows.len();
    template
        .render(minijinja::context! {
            title => &page.settings.title,
            run_info => page.run_info,
            rows => page.rows,
            overview_svg => page.overview.relevance,
            overview_baseline_svg => page.overview.baseline,
            classes => page.classes,
            detail_classes => page.settings.detail_classes,
            total_classes => total_classes,
            has_evidence => page.has_evidence,
            samples => page.samples,
            images => page.images,
            errors => page
                .errors
                .iter()
                .take(ERRORS_LISTED)
                .map(|e| PageError { path: &e.path, reason: &e.reason })
                .collect::<Vec<_>>(),
            error_count => page.errors.len(),
        })
        .map_err(ReportError::Template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::StageTables;
    use crate::overview::{overview_charts, ranking_rows};
    use crate::test_fixtures::{ranked, spectrum};
    use spray_store::analysis::ClusterContrast;

    #[test]
    fn names_from_the_data_are_escaped_on_the_page() {
        let tables = StageTables {
            spectra: Vec::new(),
            samples: Vec::new(),
            class_names: Vec::new(),
            concept_layers: Vec::new(),
            records: Default::default(),
            errors: vec![ErrorRecord {
                image_index: 0,
                sample_id: "x".into(),
                path: "<img src=x onerror=alert(1)>.png".into(),
                reason: "not an image".into(),
            }],
            evidence: Default::default(),
        };
        let ranking = [ranked(
            1,
            spectrum(0, "<script>alert(1)</script>", ClusterContrast::default()),
        )];
        let settings = ReportSettings::default();
        let html = render(Page {
            settings: &settings,
            run_info: &[("model".into(), "<b>m</b>".into())],
            rows: ranking_rows(&ranking, &tables, 0),
            overview: overview_charts(&ranking, 3).unwrap(),
            classes: Vec::new(),
            has_evidence: false,
            samples: 0,
            images: BTreeMap::new(),
            errors: &tables.errors,
        })
        .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("<b>m</b>"));
    }
}

//! The pages: the index (templates/index.html: the run, the flagged classes, the ranking of
//! every class, the eigenvalue overview, the skipped inputs) and one page per detailed class
//! (templates/class.html), each filled with its data. Both share templates/style.css and
//! templates/script.js; every page is self-contained (its pictures inline), so a class's page
//! is bounded by that class's settings (`examples_per_class`, `montage`), not by the number of
//! classes.

use std::collections::BTreeMap;

use serde::Serialize;
use spray_store::relevance::ErrorRecord;

use crate::class_page::PageClass;
use crate::overview::{OverviewCharts, PageRow};
use crate::{RankedClass, ReportError, ReportSettings, Result};

/// The pages' shared style and script, inlined into each (the pages fetch nothing).
const STYLE: &str = include_str!("../templates/style.css");
const SCRIPT: &str = include_str!("../templates/script.js");

/// Flagged classes listed with their reason at the top of the index; the rest are counted
/// (their rows of the ranking are highlighted).
const FLAGGED_LISTED: usize = 50;

/// Skipped inputs listed on the page; the rest are counted.
const ERRORS_LISTED: usize = 200;

/// Everything the index shows.
pub(crate) struct IndexPage<'a> {
    pub settings: &'a ReportSettings,
    pub run_info: &'a [(String, String)],
    pub rows: Vec<PageRow>,
    pub overview: OverviewCharts,
    pub has_evidence: bool,
    /// Analysed samples (of the page's space).
    pub samples: usize,
    pub errors: &'a [ErrorRecord],
}

/// Everything a class's page shows.
pub(crate) struct ClassPage<'a> {
    pub settings: &'a ReportSettings,
    pub class: &'a PageClass,
    pub total_classes: usize,
    /// The classes ranked just above and below, when they have pages.
    pub previous: Option<&'a RankedClass>,
    pub next: Option<&'a RankedClass>,
    /// The page's pictures, by the key the page data refers to them with.
    pub images: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PageError<'a> {
    path: &'a str,
    reason: &'a str,
}

/// A neighbouring class's link, relative to a class page (pages sit side by side).
#[derive(Serialize)]
struct Neighbour<'a> {
    rank: usize,
    name: &'a str,
    href: String,
}

impl<'a> Neighbour<'a> {
    fn of(class: &'a RankedClass) -> Self {
        Neighbour {
            rank: class.rank,
            name: &class.spectrum.class_name,
            href: crate::class_page::page_file(class.spectrum.class_index),
        }
    }
}

/// The two templates, parsed once per report (a 1,000-class report renders 1,001 pages).
pub(crate) struct Pages {
    env: minijinja::Environment<'static>,
}

impl Pages {
    pub(crate) fn new() -> Result<Self> {
        let mut env = minijinja::Environment::new();
        for (name, source) in [
            ("index.html", include_str!("../templates/index.html")),
            ("class.html", include_str!("../templates/class.html")),
        ] {
            env.add_template(name, source)
                .map_err(ReportError::Template)?;
        }
        Ok(Pages { env })
    }

    /// Template `name` filled with `context` (the shared style and script added).
    fn render(&self, name: &str, context: minijinja::Value) -> Result<String> {
        self.env
            .get_template(name)
            .and_then(|t| {
                t.render(minijinja::context! { style => STYLE, script => SCRIPT, ..context })
            })
            .map_err(ReportError::Template)
    }

    pub(crate) fn index(&self, page: IndexPage<'_>) -> Result<String> {
        let total_classes = page.rows.len();
        let flagged: Vec<&PageRow> = page.rows.iter().filter(|r| r.flagged).collect();
        let flagged_count = flagged.len();
        self.render(
            "index.html",
            minijinja::context! {
                title => &page.settings.title,
                run_info => page.run_info,
                flagged => &flagged[..flagged_count.min(FLAGGED_LISTED)],
                flagged_count => flagged_count,
                rows => &page.rows,
                overview_svg => page.overview.relevance,
                overview_baseline_svg => page.overview.baseline,
                detail_classes => page.settings.class_pages(total_classes),
                total_classes => total_classes,
                has_evidence => page.has_evidence,
                samples => page.samples,
                errors => page
                    .errors
                    .iter()
                    .take(ERRORS_LISTED)
                    .map(|e| PageError { path: &e.path, reason: &e.reason })
                    .collect::<Vec<_>>(),
                error_count => page.errors.len(),
            },
        )
    }

    pub(crate) fn class(&self, page: ClassPage<'_>) -> Result<String> {
        self.render(
            "class.html",
            minijinja::context! {
                title => &page.settings.title,
                c => page.class,
                total_classes => page.total_classes,
                previous => page.previous.map(Neighbour::of),
                next => page.next.map(Neighbour::of),
                images => page.images,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class_page::class_page;
    use crate::images::Pictures;
    use crate::inputs::StageTables;
    use crate::overview::{overview_charts, ranking_rows};
    use crate::test_fixtures::{ranked, spectrum};
    use spray_store::analysis::ClusterContrast;

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn tables() -> StageTables {
        StageTables {
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
        }
    }

    fn escaped(html: &str) {
        // minijinja escapes `/` too: `&#x2f;`.
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("<b>m</b>"));
    }

    #[test]
    fn names_from_the_data_are_escaped_on_the_index() {
        let tables = tables();
        let ranking = [ranked(1, spectrum(0, HOSTILE, ClusterContrast::default()))];
        let settings = ReportSettings::default();
        let html = Pages::new()
            .unwrap()
            .index(IndexPage {
                settings: &settings,
                run_info: &[("model".into(), "<b>m</b>".into())],
                rows: ranking_rows(&ranking, &tables, 1),
                overview: overview_charts(&ranking, 3).unwrap(),
                has_evidence: false,
                samples: 0,
                errors: &tables.errors,
            })
            .unwrap();
        escaped(&html);
        // The shared style and script are inlined.
        assert!(html.contains(STYLE) && html.contains(SCRIPT));
        // The class links to its page, by index, not by its name.
        assert!(html.contains("<a href=\"classes&#x2f;c00000.html\">&lt;script&gt;"));
    }

    #[test]
    fn names_from_the_data_are_escaped_on_a_class_page_and_its_neighbours_linked() {
        let tables = tables();
        let ranking = [
            ranked(1, spectrum(4, "first", ClusterContrast::default())),
            ranked(2, spectrum(0, HOSTILE, ClusterContrast::default())),
            ranked(3, spectrum(7, "<b>m</b>", ClusterContrast::default())),
        ];
        let settings = ReportSettings {
            title: "<b>m</b>".into(),
            ..ReportSettings::default()
        };
        let mut pictures = Pictures::default();
        let class = class_page(&ranking[1], &[], &tables, &settings, &mut pictures).unwrap();
        let html = Pages::new()
            .unwrap()
            .class(ClassPage {
                settings: &settings,
                class: &class,
                total_classes: 3,
                previous: Some(&ranking[0]),
                next: Some(&ranking[2]),
                images: pictures.into_map(),
            })
            .unwrap();
        escaped(&html);
        assert!(html.contains(STYLE) && html.contains(SCRIPT));
        assert!(html.contains("<a href=\"../index.html\">"));
        assert!(html.contains("<a href=\"c00004.html\" rel=\"prev\">← #1 first</a>"));
        assert!(html
            .contains("<a href=\"c00007.html\" rel=\"next\">#3 &lt;b&gt;m&lt;&#x2f;b&gt; →</a>"));
    }
}

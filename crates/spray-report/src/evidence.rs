//! The verify stage's evidence on the page: per class, the tested clusters and one sentence a
//! reviewer can put in an audit. Read from `<out>/verify/evidence.json` (the JSON twin of
//! evidence.csv); absent when the stage is switched off.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use spray_store::verify::ClusterLevel;

use crate::{space_wording, PRIMARY_SPACE};

/// A row of the verify stage's evidence table (the contract lives in spray-store).
pub type EvidenceRow = spray_store::verify::Evidence;

/// Rows per class, in the file's order (strongest first). A missing file is no evidence.
pub fn read(dir: Option<&Path>) -> crate::Result<BTreeMap<i32, Vec<EvidenceRow>>> {
    let mut out: BTreeMap<i32, Vec<EvidenceRow>> = BTreeMap::new();
    let Some(dir) = dir else {
        return Ok(out);
    };
    let rows = spray_store::verify::read_evidence(dir)?;
    for mut r in rows {
        // Resolve the pictures now: the page embeds them.
        r.pictures = r.pictures.map(|f| dir.join(f).display().to_string());
        out.entry(r.class_index).or_default().push(r);
    }
    Ok(out)
}

/// A row's before/after pictures on the page: the strip (its four panels side by side) as a
/// data URI, and each panel's caption.
#[derive(Debug, Serialize)]
pub struct PageStrip {
    pub uri: String,
    pub captions: [&'static str; 4],
}

/// The strip of a row, where its file exists.
fn pictures(row: &EvidenceRow) -> Option<PageStrip> {
    let bytes = std::fs::read(row.pictures.as_ref()?).ok()?;
    Some(PageStrip {
        uri: crate::images::png_bytes_uri(&bytes),
        captions: space_wording::picture_labels(row.test),
    })
}

#[derive(Debug, Serialize)]
pub struct PageEvidence {
    /// "cluster 3" or "split side 1" (spray_store::verify::ClusterLevel::label).
    pub group: String,
    pub size: usize,
    pub share: String,
    /// The evidence test's name (`shared-region`, `feature-direction`, …).
    pub test: &'static str,
    /// Whether the row can carry the class's evidence (`Evidence::counts`).
    pub counts: bool,
    /// Whether it stopped before its control and occlusion (`Evidence::screened`).
    pub screened: bool,
    pub region: String,
    pub occlusion_drop: String,
    pub occlusion_drop_rest: String,
    pub flip_rate: String,
    pub flip_rate_rest: String,
    pub logit_gain: String,
    /// Before/after occlusion and transplant.
    pub pictures: Option<PageStrip>,
}

pub(crate) use spray_verify::probe::pct;

pub fn page_rows(rows: &[EvidenceRow]) -> Vec<PageEvidence> {
    rows.iter()
        .map(|r| PageEvidence {
            group: r.group().name(),
            size: r.size,
            share: pct(r.share),
            test: r.test.name(),
            counts: r.counts(),
            screened: r.screened(),
            region: r.region.clone(),
            occlusion_drop: measured(r.occluded_images, r.occlusion_drop),
            occlusion_drop_rest: measured(r.occluded_images, r.occlusion_drop_rest),
            flip_rate: pct(r.transplant_flip_rate),
            flip_rate_rest: measured(r.control_images, r.transplant_flip_rate_rest),
            logit_gain: format!("{:+.2}", r.transplant_logit_gain),
            pictures: pictures(r),
        })
        .collect()
}

/// A share as the table shows it; "not measured" where no image was (a screened row's
/// control and occlusion).
fn measured(images: usize, share: f64) -> String {
    if images == 0 {
        "not measured".to_string()
    } else {
        pct(share)
    }
}

/// The strongest row of a class that counts for the ranking (`Evidence::counts`; the rows
/// come strongest first).
fn strongest(rows: &[EvidenceRow]) -> Option<&EvidenceRow> {
    rows.iter().find(|r| r.counts())
}

/// The plain-language line for the strongest cluster of a class, worded by its test.
pub fn sentence(rows: &[EvidenceRow]) -> Option<String> {
    Some(space_wording::evidence_sentence(strongest(rows)?))
}

/// The strongest flip rate of a class, for the ranking table.
pub fn best_flip(rows: &[EvidenceRow]) -> String {
    strongest(rows)
        .map(|r| pct(r.transplant_flip_rate))
        .unwrap_or_default()
}

/// The outline of the region the verify stage tested for cluster `cluster` of the page's space
/// (none when it did not test that cluster), over its mean heatmap of h×w pixels.
pub fn cluster_region_svg(
    class_evidence: &[EvidenceRow],
    cluster: i32,
    h: usize,
    w: usize,
) -> Option<String> {
    let e = class_evidence.iter().find(|e| {
        e.space == PRIMARY_SPACE && e.level == ClusterLevel::Cluster && e.cluster == cluster
    })?;
    region_svg(&e.region, e.grid, h, w)
}

/// An SVG outline of the region's cells, laid over a cluster's mean heatmap of h×w pixels
/// (the same `meet` fit as the image's `object-fit: contain`).
pub fn region_svg(region: &str, grid: usize, h: usize, w: usize) -> Option<String> {
    if grid == 0 || h == 0 || w == 0 {
        return None;
    }
    let cells: Vec<(usize, usize)> = region
        .split_whitespace()
        .filter_map(|c| {
            let (r, c) = c.strip_prefix('r')?.split_once('c')?;
            Some((r.parse().ok()?, c.parse().ok()?))
        })
        .collect();
    if cells.is_empty() {
        return None;
    }
    let (cw, ch) = (w as f64 / grid as f64, h as f64 / grid as f64);
    let rects: String = cells
        .iter()
        .map(|&(r, c)| {
            format!(
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{cw:.2}\" height=\"{ch:.2}\"/>",
                c as f64 * cw,
                r as f64 * ch
            )
        })
        .collect();
    Some(format!(
        "<svg class=\"region\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMidYMid meet\" \
         aria-label=\"region tested by the verify stage\"><g fill=\"none\" stroke=\"#00e5ff\" \
         stroke-width=\"{:.2}\">{rects}</g></svg>",
        (w.max(h) as f64 / 48.0).max(0.5)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_outline_has_one_rect_per_cell() {
        let svg = region_svg("r6c6 r7c7", 8, 32, 32).unwrap();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(
            svg.contains("x=\"24.00\" y=\"24.00\" width=\"4.00\""),
            "{svg}"
        );
        assert!(region_svg("", 8, 32, 32).is_none());
    }

    #[test]
    fn only_a_tested_cluster_of_the_pages_space_is_outlined() {
        use crate::test_fixtures::evidence_row;
        use spray_store::FeatureSpace;
        let rows = [
            evidence_row(FeatureSpace::Concept(0), ClusterLevel::Cluster, 1),
            evidence_row(FeatureSpace::Relevance, ClusterLevel::Split, 2),
            evidence_row(FeatureSpace::Relevance, ClusterLevel::Cluster, 3),
        ];
        assert!(cluster_region_svg(&rows, 1, 32, 32).is_none());
        assert!(cluster_region_svg(&rows, 2, 32, 32).is_none());
        let svg = cluster_region_svg(&rows, 3, 32, 32).unwrap();
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}

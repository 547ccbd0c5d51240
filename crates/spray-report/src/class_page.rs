//! A detailed class's section: its spectrum and baseline charts, the t-SNE scatter plot with
//! one point per image (previewed images carry their pictures), each cluster's prototype,
//! region and montage, and the verify stage's evidence.

use std::collections::BTreeMap;

use serde::Serialize;
use spray_store::analysis::SampleEmbedding;
use spray_store::ranking::is_flagged_ranked;
use spray_store::relevance::RelevanceRecord;

use crate::images::Pictures;
use crate::inputs::StageTables;
use crate::reasons::why_sentence;
use crate::{charts, evidence, examples, RankedClass, ReportSettings, Result};

#[derive(Serialize)]
pub(crate) struct PageClass {
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

/// One image of the scatter plot.
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

/// The id of a class's section on its page.
pub(crate) fn anchor(class_index: i32) -> String {
    format!("class-{}", spray_store::analysis::group_name(class_index))
}

/// The folder of the class pages, inside the report folder.
pub(crate) const PAGES_DIR: &str = "classes";

/// A class's page, relative to the report folder (where the index is). Named by the class
/// index, not the class name: names come from data and may hold any character.
pub(crate) fn href(class_index: i32) -> String {
    format!("{PAGES_DIR}/{}", page_file(class_index))
}

/// A class page's file name inside [`PAGES_DIR`].
pub(crate) fn page_file(class_index: i32) -> String {
    format!("{}.html", spray_store::analysis::group_name(class_index))
}

/// The section of class `r`, whose samples (of the page's space) are `members`; the pictures
/// it shows go into `pictures`.
pub(crate) fn class_page(
    r: &RankedClass,
    members: &[&SampleEmbedding],
    tables: &StageTables,
    settings: &ReportSettings,
    pictures: &mut Pictures,
) -> Result<PageClass> {
    let c = r.spectrum.class_index;
    let clusters = examples::by_cluster(members);
    let previewed = examples::previewed(&clusters, settings.examples_per_class);
    // Paths share the dataset's folder: send it once per class.
    let prefix = common_prefix(members.iter().map(|s| s.path.as_str()));
    let points = members
        .iter()
        .map(|s| {
            page_point(
                s,
                &prefix,
                previewed.contains(&s.image_index),
                tables,
                pictures,
            )
        })
        .collect();
    let scatter = charts::scatter_svg(
        "t-SNE of the relevance maps, coloured by cluster",
        &members
            .iter()
            .map(|s| (s.tsne_x, s.tsne_y, s.cluster))
            .collect::<Vec<_>>(),
    )?;
    let class_evidence = tables.class_evidence(c);
    let page_clusters = page_clusters(&clusters, members.len(), tables, settings, pictures, c);
    Ok(PageClass {
        evidence: evidence::page_rows(class_evidence),
        evidence_sentence: evidence::sentence(class_evidence),
        why: why_sentence(r, &tables.concept_layers),
        flagged: is_flagged_ranked(r),
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
    })
}

fn record<'t>(tables: &'t StageTables, s: &SampleEmbedding) -> Option<&'t RelevanceRecord> {
    tables.records.get(&(s.image_index, s.class_index))
}

/// A scatter point: the image's path after the class's `prefix`, its logit, prediction and
/// labels, and when `previewed` its thumbnail and heatmap.
fn page_point(
    s: &SampleEmbedding,
    prefix: &str,
    previewed: bool,
    tables: &StageTables,
    pictures: &mut Pictures,
) -> PagePoint {
    let rec = record(tables, s);
    PagePoint {
        id: s.sample_id.clone(),
        path: s.path[prefix.len()..].to_owned(),
        cluster: s.cluster,
        logit: rec
            .map(|r| (r.target_logit as f64 * 1e4).round() / 1e4)
            .unwrap_or(f64::NAN),
        predicted: rec
            .map(|r| tables.class_name(r.predicted_class))
            .unwrap_or_default(),
        labels: rec
            .map(|r| {
                r.labels
                    .iter()
                    .map(|&l| tables.class_name(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        thumb: if previewed {
            rec.and_then(|r| pictures.thumbnail(r))
        } else {
            None
        },
        heat: if previewed {
            rec.and_then(|r| pictures.heatmap(r))
        } else {
            None
        },
    }
}

/// Each cluster's card: size and share of the class's `n` images, prototype, the region the
/// verify stage tested for it, and its most central members.
fn page_clusters(
    clusters: &BTreeMap<i32, Vec<&SampleEmbedding>>,
    n: usize,
    tables: &StageTables,
    settings: &ReportSettings,
    pictures: &mut Pictures,
    class_index: i32,
) -> Vec<PageCluster> {
    let n = n.max(1);
    let class_evidence = tables.class_evidence(class_index);
    clusters
        .iter()
        .map(|(&id, list)| {
            // All of a class's maps share one size.
            let maps: Vec<&(i32, i32, Vec<f32>)> = list
                .iter()
                .filter_map(|s| record(tables, s).and_then(|r| r.map.as_ref()))
                .collect();
            let region_svg = maps.first().and_then(|(h, w, _)| {
                evidence::cluster_region_svg(class_evidence, id, *h as usize, *w as usize)
            });
            let examples = list
                .iter()
                .take(settings.montage)
                .map(|s| {
                    let rec = record(tables, s);
                    PageExample {
                        id: s.sample_id.clone(),
                        path: s.path.clone(),
                        thumb: rec.and_then(|r| pictures.thumbnail(r)),
                        heat: rec.and_then(|r| pictures.heatmap(r)),
                    }
                })
                .collect();
            PageCluster {
                id,
                colour: charts::cluster_css(id),
                size: list.len(),
                share: format!("{:.1}%", 100.0 * list.len() as f64 / n as f64),
                prototype: examples::prototype(&maps),
                region_svg,
                examples,
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_prefix_ends_at_a_folder() {
        let prefix = |paths: &[&str]| common_prefix(paths.iter().copied());
        assert_eq!(prefix(&["data/cat/a.png", "data/cat/b.png"]), "data/cat/");
        assert_eq!(prefix(&["data/cat/ab.png", "data/cat/ac.png"]), "data/cat/");
        assert_eq!(prefix(&["data/cat/a.png", "data/dog/a.png"]), "data/");
        assert_eq!(prefix(&["a.png", "b.png"]), "");
        assert_eq!(prefix(&["data/cat/a.png"]), "data/cat/");
        assert_eq!(prefix(&[]), "");
    }

    #[test]
    fn a_section_anchor_names_the_class_group() {
        assert_eq!(anchor(3), "class-c00003");
    }
}

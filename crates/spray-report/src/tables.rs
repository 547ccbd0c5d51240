//! The CSV tables, built as polars DataFrames.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use spray_store::analysis::SampleEmbedding;
use spray_store::relevance::RelevanceRecord;

use crate::{RankedClass, ReportError, Result};

fn write_csv(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(df)
        .map_err(|source| table_error(path, source))?;
    spray_store::write_atomically(path, &bytes).map_err(ReportError::from)
}

fn table_error(path: &Path, source: PolarsError) -> ReportError {
    ReportError::Table {
        path: path.to_owned(),
        source,
    }
}

fn frame(path: &Path, height: usize, columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new(height, columns).map_err(|source| table_error(path, source))
}

/// classes.csv: one row per class in rank order, with λ1..λm.
pub fn write_classes(path: &Path, ranking: &[RankedClass]) -> Result<()> {
    let m = ranking
        .iter()
        .map(|r| r.spectrum.eigenvalues.len())
        .max()
        .unwrap_or(0);
    let s = |f: &dyn Fn(&RankedClass) -> String| ranking.iter().map(f).collect::<Vec<_>>();
    let mut columns = vec![
        Column::new(
            "rank".into(),
            ranking.iter().map(|r| r.rank as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "class_index".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.class_index)
                .collect::<Vec<_>>(),
        ),
        Column::new("class".into(), s(&|r| r.spectrum.class_name.clone())),
        Column::new(
            "n".into(),
            ranking.iter().map(|r| r.spectrum.n).collect::<Vec<_>>(),
        ),
        Column::new(
            "knn_k".into(),
            ranking.iter().map(|r| r.spectrum.knn_k).collect::<Vec<_>>(),
        ),
    ];
    for i in 0..m {
        columns.push(Column::new(
            format!("lambda_{}", i + 1).into(),
            ranking
                .iter()
                .map(|r| r.spectrum.eigenvalues.get(i).copied())
                .collect::<Vec<Option<f64>>>(),
        ));
    }
    columns.extend([
        Column::new(
            "largest_gap".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.largest_gap)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "largest_gap_index".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.largest_gap_index)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "estimated_clusters".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.estimated_clusters)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "clusters".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.clusters)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "near_zero".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.near_zero)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "score".into(),
            ranking.iter().map(|r| r.spectrum.score).collect::<Vec<_>>(),
        ),
        Column::new(
            "score_eigengap".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.largest_gap)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "score_lambda2".into(),
            ranking
                .iter()
                .map(|r| -r.spectrum.lambda2)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "score_contrast".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.contrast.score())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "contrast_cluster".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.contrast.cluster)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "contrast_share".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.contrast.share)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "contrast_separation".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.contrast.separation)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "contrast_magnitude_shift".into(),
            ranking
                .iter()
                .map(|r| r.spectrum.contrast.magnitude_shift)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "image_lambda2".into(),
            ranking
                .iter()
                .map(|r| r.baseline.as_ref().map(|b| b.lambda2))
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "image_largest_gap".into(),
            ranking
                .iter()
                .map(|r| r.baseline.as_ref().map(|b| b.largest_gap))
                .collect::<Vec<Option<f64>>>(),
        ),
    ]);
    let mut df = frame(path, ranking.len(), columns)?;
    write_csv(path, &mut df)
}

/// samples.csv: one row per analysed sample (relevance space), in class then image order.
pub fn write_samples(
    path: &Path,
    samples: &[&SampleEmbedding],
    records: &HashMap<(i64, i32), RelevanceRecord>,
    classes: &[String],
) -> Result<()> {
    let name = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| classes.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let mut sorted: Vec<&SampleEmbedding> = samples.to_vec();
    sorted.sort_by_key(|s| (s.class_index, s.image_index));
    let rec = |s: &SampleEmbedding| records.get(&(s.image_index, s.class_index));
    let columns = vec![
        Column::new(
            "sample_id".into(),
            sorted
                .iter()
                .map(|s| s.sample_id.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "path".into(),
            sorted.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "class_index".into(),
            sorted.iter().map(|s| s.class_index).collect::<Vec<_>>(),
        ),
        Column::new(
            "class".into(),
            sorted
                .iter()
                .map(|s| name(s.class_index))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "labels".into(),
            sorted
                .iter()
                .map(|s| {
                    rec(s)
                        .map(|r| {
                            r.labels
                                .iter()
                                .map(|&l| name(l))
                                .collect::<Vec<_>>()
                                .join(";")
                        })
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "target_logit".into(),
            sorted
                .iter()
                .map(|s| rec(s).map(|r| r.target_logit))
                .collect::<Vec<Option<f32>>>(),
        ),
        Column::new(
            "predicted_class".into(),
            sorted
                .iter()
                .map(|s| rec(s).map(|r| r.predicted_class))
                .collect::<Vec<Option<i32>>>(),
        ),
        Column::new(
            "predicted".into(),
            sorted
                .iter()
                .map(|s| rec(s).map(|r| name(r.predicted_class)).unwrap_or_default())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "cluster".into(),
            sorted.iter().map(|s| s.cluster).collect::<Vec<_>>(),
        ),
        Column::new(
            "split".into(),
            sorted.iter().map(|s| s.split).collect::<Vec<_>>(),
        ),
        Column::new(
            "tsne_x".into(),
            sorted.iter().map(|s| s.tsne_x).collect::<Vec<_>>(),
        ),
        Column::new(
            "tsne_y".into(),
            sorted.iter().map(|s| s.tsne_y).collect::<Vec<_>>(),
        ),
    ];
    let mut df = frame(path, sorted.len(), columns)?;
    write_csv(path, &mut df)
}

/// clusters.csv: size and share of every cluster of every class, in rank order.
pub fn write_clusters(
    path: &Path,
    ranking: &[RankedClass],
    samples: &[&SampleEmbedding],
) -> Result<()> {
    let mut counts: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    let mut totals: HashMap<i32, usize> = HashMap::new();
    for s in samples {
        *counts.entry((s.class_index, s.cluster)).or_default() += 1;
        *totals.entry(s.class_index).or_default() += 1;
    }
    let (mut class_index, mut class, mut cluster, mut size, mut share) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in ranking {
        let c = r.spectrum.class_index;
        for (&(ci, k), &count) in counts.range((c, i32::MIN)..=(c, i32::MAX)) {
            class_index.push(ci);
            class.push(r.spectrum.class_name.clone());
            cluster.push(k);
            size.push(count as i64);
            share.push(count as f64 / totals[&c] as f64);
        }
    }
    let height = class.len();
    let mut df = frame(
        path,
        height,
        vec![
            Column::new("class_index".into(), class_index),
            Column::new("class".into(), class),
            Column::new("cluster".into(), cluster),
            Column::new("size".into(), size),
            Column::new("share".into(), share),
        ],
    )?;
    write_csv(path, &mut df)
}

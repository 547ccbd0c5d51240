//! The CSV tables (classes.csv, samples.csv, clusters.csv), built as polars DataFrames.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use spray_store::analysis::{ClusterContrast, SampleEmbedding};
use spray_store::relevance::RelevanceRecord;

use spray_store::ranking::is_flagged_ranked;
use spray_store::relevance::ConceptLayerInfo;

use crate::inputs::{RecordKey, StageTables};
use crate::reasons::why_sentence;
use crate::{RankedClass, ReportError, Result};

/// The three tables, into the report folder `dir`.
pub fn write_all(dir: &Path, ranking: &[RankedClass], tables: &StageTables) -> Result<()> {
    write_classes(&dir.join("classes.csv"), ranking, &tables.concept_layers)?;
    write_samples(
        &dir.join("samples.csv"),
        &tables.samples,
        &tables.records,
        &tables.class_names,
    )?;
    write_clusters(&dir.join("clusters.csv"), ranking, &tables.samples)
}

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

/// A column of one value per row.
fn column<R, T, P: ?Sized>(name: &str, rows: &[R], value: impl Fn(&R) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, P>,
{
    Column::new(name.into(), rows.iter().map(value).collect::<Vec<T>>())
}

/// A cluster the analysis singles out (`which`: the strongest by the contrast criterion, or
/// the most cut off) as four columns `<prefix>_cluster`, `_share`, `_separation` and
/// `_magnitude_shift`.
fn cluster_columns(
    prefix: &str,
    ranking: &[RankedClass],
    which: fn(&RankedClass) -> ClusterContrast,
) -> Vec<Column> {
    vec![
        column(&format!("{prefix}_cluster"), ranking, |r| which(r).cluster),
        column(&format!("{prefix}_share"), ranking, |r| which(r).share),
        column(&format!("{prefix}_separation"), ranking, |r| {
            which(r).separation
        }),
        column(&format!("{prefix}_magnitude_shift"), ranking, |r| {
            which(r).magnitude_shift
        }),
    ]
}

/// What a reviewer sorts by, beside the class: whether it is flagged, by which rule
/// (`evidence`: the verify stage tested it; `spectrum`: the analysis alone), and the verify
/// stage's strongest group with its effect (flip rate − control), flip rate and control.
fn verdict_columns(ranking: &[RankedClass]) -> Vec<Column> {
    vec![
        column("flagged", ranking, is_flagged_ranked),
        column("flagged_by", ranking, |r| {
            match (is_flagged_ranked(r), r.evidence.is_some()) {
                (false, _) => None,
                (true, true) => Some("evidence"),
                (true, false) => Some("spectrum"),
            }
        }),
        column("verified_effect", ranking, |r| {
            r.evidence.map(|e| e.specific())
        }),
        column("verified_flip_rate", ranking, |r| {
            r.evidence.map(|e| e.flip_rate)
        }),
        column("verified_control_flip_rate", ranking, |r| {
            r.evidence
                .filter(|e| !e.screened)
                .map(|e| e.control_flip_rate)
        }),
        column("verified_group", ranking, |r| {
            r.evidence.map(|e| e.group().name())
        }),
        column("verified_space", ranking, |r| {
            r.evidence.map(|e| e.space.to_string())
        }),
        column("verified_test", ranking, |r| {
            r.evidence.map(|e| e.test.name())
        }),
    ]
}

/// classes.csv: one row per class in rank order: the verdict first ([`verdict_columns`]),
/// then λ1..λm and the analysis' figures, and last the report's sentence of why.
pub fn write_classes(
    path: &Path,
    ranking: &[RankedClass],
    concept_layers: &[ConceptLayerInfo],
) -> Result<()> {
    let m = ranking
        .iter()
        .map(|r| r.spectrum.eigenvalues.len())
        .max()
        .unwrap_or(0);
    let mut columns = vec![
        column("rank", ranking, |r| r.rank as i64),
        column("class_index", ranking, |r| r.spectrum.class_index),
        column("class", ranking, |r| r.spectrum.class_name.clone()),
    ];
    columns.extend(verdict_columns(ranking));
    columns.extend([
        column("n", ranking, |r| r.spectrum.n),
        column("knn_k", ranking, |r| r.spectrum.knn_k),
    ]);
    for i in 0..m {
        columns.push(column(&format!("lambda_{}", i + 1), ranking, |r| {
            r.spectrum.eigenvalues.get(i).copied()
        }));
    }
    columns.extend([
        column("largest_gap", ranking, |r| r.spectrum.largest_gap),
        column("largest_gap_index", ranking, |r| {
            r.spectrum.largest_gap_index
        }),
        column("estimated_clusters", ranking, |r| {
            r.spectrum.estimated_clusters
        }),
        column("clusters", ranking, |r| r.spectrum.clusters),
        column("near_zero", ranking, |r| r.spectrum.near_zero),
        column("score", ranking, |r| r.spectrum.score),
        column("score_eigengap", ranking, |r| r.spectrum.largest_gap),
        column("score_lambda2", ranking, |r| -r.spectrum.lambda2),
        column("score_contrast", ranking, |r| r.spectrum.contrast.score()),
    ]);
    columns.extend(cluster_columns("contrast", ranking, |r| {
        r.spectrum.contrast
    }));
    columns.extend(cluster_columns("cut_off", ranking, |r| r.spectrum.cut_off));
    columns.extend([
        column("image_lambda2", ranking, |r| {
            r.baseline.as_ref().map(|b| b.lambda2)
        }),
        column("image_largest_gap", ranking, |r| {
            r.baseline.as_ref().map(|b| b.largest_gap)
        }),
        column("reason", ranking, |r| why_sentence(r, concept_layers)),
    ]);
    let mut df = frame(path, ranking.len(), columns)?;
    write_csv(path, &mut df)
}

/// samples.csv: one row per analysed sample (the page's space), in class then image order.
pub fn write_samples(
    path: &Path,
    samples: &[SampleEmbedding],
    records: &HashMap<RecordKey, RelevanceRecord>,
    classes: &[String],
) -> Result<()> {
    let name = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| classes.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let mut sorted: Vec<&SampleEmbedding> = samples.iter().collect();
    sorted.sort_by_key(|s| (s.class_index, s.image_index));
    let rec = |s: &SampleEmbedding| records.get(&(s.image_index, s.class_index));
    let labels = |r: &RelevanceRecord| {
        r.labels
            .iter()
            .map(|&l| name(l))
            .collect::<Vec<_>>()
            .join(";")
    };
    let columns = vec![
        column("sample_id", &sorted, |s| s.sample_id.clone()),
        column("path", &sorted, |s| s.path.clone()),
        column("class_index", &sorted, |s| s.class_index),
        column("class", &sorted, |s| name(s.class_index)),
        column("labels", &sorted, |s| {
            rec(s).map(labels).unwrap_or_default()
        }),
        column("target_logit", &sorted, |s| rec(s).map(|r| r.target_logit)),
        column("predicted_class", &sorted, |s| {
            rec(s).map(|r| r.predicted_class)
        }),
        column("predicted", &sorted, |s| {
            rec(s).map(|r| name(r.predicted_class)).unwrap_or_default()
        }),
        column("cluster", &sorted, |s| s.cluster),
        column("split", &sorted, |s| s.split),
        column("tsne_x", &sorted, |s| s.tsne_x),
        column("tsne_y", &sorted, |s| s.tsne_y),
    ];
    let mut df = frame(path, sorted.len(), columns)?;
    write_csv(path, &mut df)
}

/// clusters.csv: size and share of every cluster of every class, in rank order.
pub fn write_clusters(
    path: &Path,
    ranking: &[RankedClass],
    samples: &[SampleEmbedding],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{ranked, sample, spectrum};
    use spray_store::analysis::ClusterContrast;

    #[test]
    fn classes_have_as_many_eigenvalue_columns_as_the_longest_spectrum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.csv");
        let mut short = spectrum(1, "dog", ClusterContrast::default());
        short.eigenvalues.truncate(2);
        let ranking = [
            ranked(1, spectrum(0, "cat", ClusterContrast::default())),
            ranked(2, short),
        ];
        write_classes(&path, &ranking, &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "rank,class_index,class,flagged,flagged_by,verified_effect,verified_flip_rate,\
                 verified_control_flip_rate,verified_group,verified_space,verified_test,\
                 n,knn_k,lambda_1,lambda_2,lambda_3,largest_gap,"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with(",image_lambda2,image_largest_gap,reason"),
            "{}",
            lines[0]
        );
        // Not flagged, not tested: the verdict's figures are empty; the shorter spectrum's
        // missing eigenvalue and the absent baseline are empty.
        assert!(
            lines[2].starts_with("2,1,dog,false,,,,,,,,100,10,0.0,0.1,,0.4,"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].ends_with("\"")
                && lines[2].contains(",,,\"not tested by the verify stage; in the analysis, "),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn a_class_flagged_by_its_evidence_says_so_with_the_group_and_its_effect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.csv");
        let mut tested = ranked(1, spectrum(0, "cat", ClusterContrast::default()));
        tested.evidence = Some(spray_store::ranking::ClassEvidence {
            space: spray_store::FeatureSpace::Concept(0),
            level: spray_store::ClusterLevel::Cluster,
            cluster: 2,
            test: spray_store::EvidenceTest::FeatureDirection,
            flip_rate: 0.75,
            control_flip_rate: 0.25,
            screened: false,
            recipients: (0, 0),
        });
        let cut_off = ClusterContrast {
            cluster: 1,
            share: 0.3,
            separation: 0.95,
            magnitude_shift: 2.0,
        };
        let ranking = [tested, ranked(2, spectrum(1, "dog", cut_off))];
        write_classes(&path, &ranking, &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with(
                "1,0,cat,true,evidence,0.5,0.75,0.25,concept-0 cluster 2,concept-0,\
                 feature-direction,"
            ),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("\"tested by the verify stage: "),
            "{}",
            lines[1]
        );
        // Untested, flagged by its spectrum: the verdict's figures stay empty.
        assert!(
            lines[2].starts_with("2,1,dog,true,spectrum,,,,,,,"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn clusters_are_listed_in_rank_order_with_their_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clusters.csv");
        let mut samples = vec![sample(0, 0, 0.0), sample(1, 1, 0.0), sample(2, 1, 0.0)];
        let mut other = sample(3, 0, 0.0);
        other.class_index = 1;
        samples.push(other);
        let ranking = [
            ranked(1, spectrum(1, "dog", ClusterContrast::default())),
            ranked(2, spectrum(0, "cat", ClusterContrast::default())),
        ];
        write_clusters(&path, &ranking, &samples).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "class_index,class,cluster,size,share",
                "1,dog,0,1,1.0",
                "0,cat,0,1,0.3333333333333333",
                "0,cat,1,2,0.6666666666666666",
            ]
        );
    }
}

//! Every table reads back what was written; writes leave no temporary files behind.

use spray_store::analysis::{self, ClassSpectrum, SampleEmbedding};
use spray_store::relevance::{self, ErrorRecord, ReadOptions, RelevanceLayout, RelevanceRecord};

fn record(i: i64, layout: &RelevanceLayout) -> RelevanceRecord {
    RelevanceRecord {
        image_index: i,
        sample_id: format!("id<{i}>"),
        path: format!("/data/ü/{i}.jpg"),
        class_index: (i % 3) as i32,
        class_name: "cat".into(),
        labels: (0..(i % 3) as i32 + 1).collect(),
        target_logit: i as f32 * 0.5,
        predicted_class: 1,
        relevance_sum: 1.25,
        conservation_error: 0.01,
        grids: layout.grids.iter().map(|g| vec![i as f32; g * g]).collect(),
        map: Some((2, 3, vec![0.5; 6])),
        image_grids: layout.grids.iter().map(|g| vec![0.25; 3 * g * g]).collect(),
        thumbnail: (i % 2 == 0).then(|| vec![1, 2, 3]),
        concept: (layout.concept_width() > 0).then(|| {
            (0..layout.concept_width())
                .map(|j| j as f32 - i as f32)
                .collect()
        }),
        colour: layout
            .colour_stats
            .then(|| vec![0.5, 0.25, 0.125, -3.0, -2.5, -2.0]),
        compression: layout
            .compression_stats
            .then(|| vec![0.875, -0.0625 * i as f32, 90.0 - i as f32]),
        logits: layout.logits.then(|| vec![i as f32, -1.5, 0.25]),
    }
}

#[test]
fn relevance_parts_and_errors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let layout = RelevanceLayout {
        grids: vec![2, 4],
        store_map: true,
        store_images: true,
        concept_layers: vec![
            relevance::ConceptLayerInfo {
                node: "/3/Conv".into(),
                channels: 2,
            },
            relevance::ConceptLayerInfo {
                node: "/6/Conv".into(),
                channels: 3,
            },
        ],
        colour_stats: true,
        compression_stats: true,
        logits: true,
    };
    let rows: Vec<_> = (0..5).map(|i| record(i, &layout)).collect();
    let path = dir.path().join("part-00000.parquet");
    relevance::write_part(&path, &layout, &rows).unwrap();
    let back = relevance::read_part(
        &path,
        &ReadOptions {
            grids: vec![2, 4],
            map: true,
            images: true,
            thumbnails: true,
            concept: true,
            colour: true,
            compression: true,
            logits: true,
        },
    )
    .unwrap();
    assert_eq!(back, rows);
    assert_eq!(relevance::stored_grids(&path).unwrap(), vec![2, 4]);
    assert_eq!(layout.concept_ranges(), vec![0..2, 2..5]);
    // Reading only what analysis needs skips the wide columns.
    let narrow = relevance::read_part(
        &path,
        &ReadOptions {
            grids: vec![4],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(narrow[3].grids, vec![vec![3.0; 16]]);
    assert!(narrow[3].map.is_none() && narrow[3].thumbnail.is_none());
    assert!(narrow[3].concept.is_none() && narrow[3].colour.is_none());
    assert!(narrow[3].compression.is_none());
    assert!(narrow[3].logits.is_none());
    // The pooled inputs without the thumbnails (what the analysis' image space reads).
    let pooled = relevance::read_part(
        &path,
        &ReadOptions {
            grids: vec![2],
            images: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(pooled[0].image_grids, rows[0].image_grids[..1]);
    assert!(pooled[0].thumbnail.is_none() && rows[0].thumbnail.is_some());
    // ... and does not decode them: a batch read for some columns holds those alone, in the
    // file's order, and a name the file lacks is no error (the reader of a column says).
    let names: Vec<String> = ["grid_4", "image_index", "not_a_column"]
        .map(String::from)
        .to_vec();
    let batches = spray_store::read_batches_of(&path, Some(&names)).unwrap();
    let schema = batches[0].schema();
    let read: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(read, ["image_index", "grid_4"]);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    let every = spray_store::read_batches(&path).unwrap();
    assert!(every[0].schema().fields().len() > 10);
    // A row without its logits is refused where the layout has them.
    let mut no_logits = rows.clone();
    no_logits[1].logits = None;
    assert!(
        relevance::write_part(&dir.path().join("no-logits.parquet"), &layout, &no_logits).is_err()
    );
    // A row without its concept relevance is refused, not written short.
    let mut short = rows.clone();
    short[2].concept = Some(vec![1.0; 4]);
    assert!(relevance::write_part(&dir.path().join("short.parquet"), &layout, &short).is_err());
    let mut no_colour = rows.clone();
    no_colour[1].colour = None;
    assert!(
        relevance::write_part(&dir.path().join("no-colour.parquet"), &layout, &no_colour).is_err()
    );
    let mut short_blocks = rows.clone();
    short_blocks[4].compression = Some(vec![0.5]);
    let short_path = dir.path().join("short-blocks.parquet");
    assert!(relevance::write_part(&short_path, &layout, &short_blocks).is_err());

    let errors = vec![ErrorRecord {
        image_index: 9,
        sample_id: "x".into(),
        path: "/x.jpg".into(),
        reason: "empty file (0 bytes)".into(),
    }];
    let epath = dir.path().join("errors-00000.parquet");
    relevance::write_errors(&epath, &errors).unwrap();
    assert_eq!(relevance::read_errors(&epath).unwrap(), errors);
    relevance::write_errors(&dir.path().join("errors-00001.parquet"), &[]).unwrap();

    // Only finished files are listed; no temporary file is left.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert_eq!(
        spray_store::list_parquet(dir.path(), "part-").unwrap(),
        vec![path]
    );
}

#[test]
fn colour_statistics_are_channel_means_and_log_spreads() {
    // Two pixels: red channel 0 and 255 (mean 0.5, sd 0.5), green 51 both (sd 0: floored at
    // 1/255), blue 0 and 102 (mean 0.2, sd 0.2).
    let s = relevance::colour_stats(&[0, 51, 0, 255, 51, 102]);
    let want = [
        0.5,
        0.2,
        0.2,
        0.5f64.ln(),
        (1.0f64 / 255.0).ln(),
        0.2f64.ln(),
    ];
    assert_eq!(s.len(), relevance::COLOUR_STATS);
    for (got, want) in s.iter().zip(want) {
        assert!((*got as f64 - want).abs() < 1e-5, "{s:?}");
    }
}

#[test]
fn a_row_without_its_grid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = RelevanceLayout {
        grids: vec![2],
        store_map: false,
        store_images: false,
        concept_layers: Vec::new(),
        colour_stats: false,
        compression_stats: false,
        logits: false,
    };
    let mut row = record(0, &layout);
    row.grids[0].pop();
    let path = dir.path().join("part-00000.parquet");
    assert!(relevance::write_part(&path, &layout, &[row]).is_err());
    assert!(!path.exists());
}

#[test]
fn analysis_group_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spectra = vec![ClassSpectrum {
        class_index: 3,
        class_name: "dog".into(),
        space: spray_store::FeatureSpace::Relevance,
        n: 10,
        knn_k: 3,
        eigenvalues: vec![0.0, 0.1, 0.5],
        gaps: vec![0.1, 0.4],
        largest_gap: 0.4,
        largest_gap_index: 2,
        estimated_clusters: 2,
        clusters: 2,
        near_zero: 1,
        lambda2: 0.1,
        score: -0.1,
        contrast: analysis::ClusterContrast {
            cluster: 1,
            share: 0.3,
            separation: 0.95,
            magnitude_shift: 1.5,
        },
        cut_off: analysis::ClusterContrast {
            cluster: 0,
            share: 0.2,
            separation: 0.99,
            magnitude_shift: -0.25,
        },
    }];
    let samples = vec![SampleEmbedding {
        class_index: 3,
        space: spray_store::FeatureSpace::Relevance,
        image_index: 7,
        sample_id: "s".into(),
        path: "p".into(),
        cluster: 1,
        tsne_x: 0.5,
        tsne_y: -0.5,
        spectral: vec![0.6, 0.8],
        centrality: 0.1,
        split: 1,
    }];
    let sp = dir
        .path()
        .join(format!("spectrum-{}.parquet", analysis::group_name(3)));
    let sa = dir
        .path()
        .join(format!("samples-{}.parquet", analysis::group_name(3)));
    // A concept space's rows beside the relevance space's.
    let mut spectra = spectra;
    let mut samples = samples;
    spectra.push(ClassSpectrum {
        space: spray_store::FeatureSpace::Concept(1),
        ..spectra[0].clone()
    });
    samples.push(SampleEmbedding {
        space: spray_store::FeatureSpace::Concept(1),
        ..samples[0].clone()
    });
    analysis::write_group(&sp, &sa, &spectra, &samples).unwrap();
    assert_eq!(analysis::read_spectra(&sp).unwrap(), spectra);
    assert_eq!(analysis::read_samples(&sa).unwrap(), samples);
    for text in ["relevance", "image", "concept-0", "concept-12"] {
        let space: spray_store::FeatureSpace = text.parse().unwrap();
        assert_eq!(space.to_string(), text);
    }
    assert!("concept-".parse::<spray_store::FeatureSpace>().is_err());
    assert!("concept-300".parse::<spray_store::FeatureSpace>().is_err());
}

#[test]
fn parquet_manifest_with_label_lists_and_names() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, ListArray, RecordBatch, StringArray};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{DataType, Field, Schema};

    let dir = tempfile::tempdir().unwrap();
    let item = Arc::new(Field::new("item", DataType::Int32, false));
    let labels = ListArray::new(
        item.clone(),
        OffsetBuffer::from_lengths([2, 0, 1]),
        Arc::new(Int32Array::from(vec![3, 7, 1])),
        None,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("labels", DataType::List(item), false),
        Field::new("sample_id", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a.jpg", "b.jpg", "c.png"])),
        Arc::new(labels),
        Arc::new(StringArray::from(vec![Some("first"), None, Some("")])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let path = dir.path().join("m.parquet");
    spray_store::write_batches_atomically(&path, schema, &[batch]).unwrap();
    let rows = spray_store::manifest::read_parquet(&path).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].labels, vec!["3", "7"]);
    assert_eq!(rows[0].sample_id.as_deref(), Some("first"));
    assert!(rows[1].labels.is_empty() && rows[1].sample_id.is_none());
    assert_eq!(rows[2].labels, vec!["1"]);
    assert_eq!(rows[2].sample_id, None);
}

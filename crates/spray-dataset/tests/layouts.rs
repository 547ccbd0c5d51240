//! Dataset layouts on small generated folders (no image is decoded: layouts read listings
//! and label files only).

use std::path::{Path, PathBuf};

use spray_dataset::{Dataset, DatasetKind, DatasetSpec};

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
}

fn spec(kind: DatasetKind, root: PathBuf) -> DatasetSpec {
    DatasetSpec {
        kind,
        root,
        split: None,
        year: None,
        include_difficult: false,
        classes: None,
        limit_per_class: None,
    }
}

#[test]
fn voc_from_annotations_when_class_files_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let year = dir.path().join("VOC2007");
    for (id, objects) in [
        ("000001", vec![("dog", 0), ("person", 0)]),
        ("000002", vec![("cat", 1)]), // difficult only
        ("000003", vec![("cat", 0), ("cat", 0)]),
    ] {
        touch(&year.join(format!("JPEGImages/{id}.jpg")));
        let xml: String = objects
            .iter()
            .map(|(n, d)| format!("<object><name>{n}</name><difficult>{d}</difficult></object>"))
            .collect();
        std::fs::create_dir_all(year.join("Annotations")).unwrap();
        std::fs::write(
            year.join(format!("Annotations/{id}.xml")),
            format!("<annotation>{xml}</annotation>"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(year.join("ImageSets/Main")).unwrap();
    std::fs::write(
        year.join("ImageSets/Main/test.txt"),
        "000001\n000002\n000003\n",
    )
    .unwrap();

    let ds = Dataset::open(&spec(DatasetKind::Voc, dir.path().to_path_buf())).unwrap();
    assert_eq!(ds.classes.len(), 20);
    let ids: Vec<_> = ds.samples.iter().map(|s| s.sample_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["000001", "000003"],
        "difficult-only image skipped"
    );
    assert_eq!(ds.samples[0].labels, vec![11, 14]); // dog, person
    assert_eq!(ds.samples[1].labels, vec![7]); // cat, deduplicated

    let mut with_difficult = spec(DatasetKind::Voc, dir.path().to_path_buf());
    with_difficult.include_difficult = true;
    with_difficult.classes = Some(vec!["cat".into()]);
    let ds = Dataset::open(&with_difficult).unwrap();
    let ids: Vec<_> = ds.samples.iter().map(|s| s.sample_id.as_str()).collect();
    assert_eq!(ids, vec!["000002", "000003"]);
    assert!(ds.samples.iter().all(|s| s.targets == vec![7]));
}

#[test]
fn imagenet_class_folders_sorted_wnids_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    for (w, n) in [("n02", 3), ("n01", 2), ("n03", 4)] {
        for i in 0..n {
            touch(&dir.path().join(format!("val/{w}/img_{w}_{i}.JPEG")));
        }
    }
    touch(&dir.path().join("val/n01/readme.txt")); // not an image: ignored
    let mut s = spec(DatasetKind::Imagenet, dir.path().to_path_buf());
    s.limit_per_class = Some(2);
    let ds = Dataset::open(&s).unwrap();
    assert_eq!(ds.classes, vec!["n01", "n02", "n03"]);
    assert_eq!(ds.samples.len(), 6);
    for (i, sample) in ds.samples.iter().enumerate() {
        assert_eq!(sample.index, i);
    }
    s.classes = Some(vec!["n03".into()]);
    s.limit_per_class = None;
    let ds = Dataset::open(&s).unwrap();
    assert_eq!(ds.samples.len(), 4);
    assert!(ds.samples.iter().all(|x| x.labels == vec![2]));
    s.classes = Some(vec!["n99".into()]);
    let err = Dataset::open(&s).unwrap_err().to_string();
    assert!(err.contains("n99"), "{err}");
}

#[test]
fn folder_with_class_list_and_manifest_csv() {
    let dir = tempfile::tempdir().unwrap();
    for c in ["b", "a", "c"] {
        touch(&dir.path().join(format!("{c}/1.png")));
        touch(&dir.path().join(format!("{c}/2.JPG")));
    }
    let ds = Dataset::open(&spec(DatasetKind::Folder, dir.path().to_path_buf())).unwrap();
    assert_eq!(ds.classes, vec!["a", "b", "c"]);
    let mut s = spec(DatasetKind::Folder, dir.path().to_path_buf());
    s.classes = Some(vec!["c".into(), "a".into()]);
    let ds = Dataset::open(&s).unwrap();
    assert_eq!(ds.classes, vec!["c", "a"]);
    assert_eq!(ds.samples.len(), 4);
    assert_eq!(ds.samples.iter().filter(|x| x.labels == vec![0]).count(), 2);

    let manifest = dir.path().join("list.csv");
    std::fs::write(
        &manifest,
        "path,labels,sample_id\na/1.png,cat;dog,first\nb/1.png,dog,\n/abs/x.png,cat,third\n",
    )
    .unwrap();
    let ds = Dataset::open(&spec(DatasetKind::Manifest, manifest)).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    let first = ds.samples.iter().find(|x| x.sample_id == "first").unwrap();
    assert_eq!(first.labels, vec![0, 1]);
    assert_eq!(first.path, dir.path().join("a/1.png"));
    assert!(ds.samples.iter().any(|x| x.sample_id == "b/1.png"));
    assert!(ds.samples.iter().any(|x| x.path == Path::new("/abs/x.png")));
}

#[test]
fn imagenet_flat_val_with_the_cls_loc_devkit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("LOC_synset_mapping.txt"),
        "n01 tench, Tinca tinca\nn02 goldfish\nn03 shark\n",
    )
    .unwrap();
    // devkit ids are not in wnid order
    std::fs::create_dir_all(dir.path().join("devkit/data")).unwrap();
    std::fs::write(
        dir.path().join("devkit/data/map_clsloc.txt"),
        "n03 1 shark\nn01 2 tench\nn02 3 goldfish\n",
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("devkit/data/ILSVRC2015_clsloc_validation_ground_truth.txt"),
        "2\n1\n3\n1\n",
    )
    .unwrap();
    for i in 1..=4 {
        touch(&dir.path().join(format!("val/ILSVRC2012_val_{i:08}.JPEG")));
    }
    let ds = Dataset::open(&spec(DatasetKind::Imagenet, dir.path().to_path_buf())).unwrap();
    assert_eq!(ds.classes, vec!["tench", "goldfish", "shark"]);
    let labels: Vec<Vec<i32>> = ds.samples.iter().map(|s| s.labels.clone()).collect();
    assert_eq!(labels, vec![vec![0], vec![2], vec![1], vec![2]]);

    // A missing label source is an error that says what is needed.
    std::fs::remove_file(dir.path().join("devkit/data/map_clsloc.txt")).unwrap();
    let err = Dataset::open(&spec(DatasetKind::Imagenet, dir.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LOC_val_solution.csv") && err.contains("map_clsloc.txt"),
        "{err}"
    );
}

//! The four dataset layouts. Each returns class names, unordered samples, and (for VOC and
//! ImageNet) which classes the user selected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::{io_err, layout_err, DatasetError, DatasetSpec, Result};

pub(crate) struct RawSample {
    pub sample_id: String,
    pub path: PathBuf,
    pub labels: Vec<i32>,
}

type Layout = (Vec<String>, Vec<RawSample>, Option<Vec<bool>>);

/// Pascal VOC's classes in the order of its devkit (and of VOC-trained models).
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(path: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| io_err(path, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| io_err(path, err)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which of `classes` the user's list names (by name or, for ImageNet, by wnid). Unknown
/// names are an error that lists them.
fn select(
    classes: &[String],
    aliases: &[String],
    wanted: &Option<Vec<String>>,
    root: &Path,
) -> Result<Option<Vec<bool>>> {
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    let mut selected = vec![false; classes.len()];
    let mut unknown = Vec::new();
    for name in wanted {
        match classes
            .iter()
            .position(|c| c == name)
            .or_else(|| aliases.iter().position(|c| c == name))
        {
            Some(i) => selected[i] = true,
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(layout_err(
            root,
            format!("unknown classes in `classes`: {}", unknown.join(", ")),
        ));
    }
    Ok(Some(selected))
}

/// The folder holding JPEGImages for VOC: accepts the year folder, `VOCdevkit`, or its parent.
fn voc_year_dir(root: &Path, year: &str) -> Result<PathBuf> {
    let candidates = [
        root.to_path_buf(),
        root.join(format!("VOC{year}")),
        root.join("VOCdevkit").join(format!("VOC{year}")),
    ];
    candidates
        .iter()
        .find(|c| c.join("JPEGImages").is_dir())
        .cloned()
        .ok_or_else(|| {
            layout_err(
                root,
                format!("not a Pascal VOC {year} folder (no JPEGImages under it, VOC{year}/ or VOCdevkit/VOC{year}/)"),
            )
        })
}

pub(crate) fn voc(spec: &DatasetSpec) -> Result<Layout> {
    let year = spec.year.as_deref().unwrap_or("2007");
    let set = spec.split.as_deref().unwrap_or("test");
    let dir = voc_year_dir(&spec.root, year)?;
    let main = dir.join("ImageSets").join("Main");
    let ids_file = main.join(format!("{set}.txt"));
    let ids: Vec<String> = read_to_string(&ids_file)?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let classes: Vec<String> = VOC_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut labels: HashMap<String, Vec<i32>> = ids.iter().map(|i| (i.clone(), vec![])).collect();

    // Labels come from the per-class image-set files (1 = present, 0 = difficult only,
    // −1 = absent); where they are missing, from the XML annotations.
    let class_files: Vec<PathBuf> = classes
        .iter()
        .map(|c| main.join(format!("{c}_{set}.txt")))
        .collect();
    if class_files.iter().all(|f| f.is_file()) {
        for (ci, file) in class_files.iter().enumerate() {
            for (line_no, line) in read_to_string(file)?.lines().enumerate() {
                let mut parts = line.split_whitespace();
                let (Some(id), Some(flag)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let flag: i32 = flag.parse().map_err(|_| {
                    layout_err(
                        file,
                        format!("line {}: label `{flag}` is not 1, 0 or -1", line_no + 1),
                    )
                })?;
                if flag == 1 || (flag == 0 && spec.include_difficult) {
                    if let Some(l) = labels.get_mut(id) {
                        l.push(ci as i32);
                    }
                }
            }
        }
    } else {
        for id in &ids {
            let xml_path = dir.join("Annotations").join(format!("{id}.xml"));
            let Ok(text) = std::fs::read_to_string(&xml_path) else {
                // A missing annotation leaves the image unlabelled; it is then skipped, and
                // the relevance stage's log says how many images had no label.
                continue;
            };
            let doc = roxmltree::Document::parse(&text)
                .map_err(|e| layout_err(&xml_path, format!("invalid XML: {e}")))?;
            for object in doc.descendants().filter(|n| n.has_tag_name("object")) {
                let child_text = |tag: &str| {
                    object
                        .children()
                        .find(|c| c.has_tag_name(tag))
                        .and_then(|c| c.text())
                        .map(|t| t.trim().to_owned())
                };
                let Some(name) = child_text("name") else {
                    continue;
                };
                let difficult = child_text("difficult").is_some_and(|d| d == "1");
                if difficult && !spec.include_difficult {
                    continue;
                }
                if let Some(ci) = classes.iter().position(|c| *c == name) {
                    if let Some(l) = labels.get_mut(id) {
                        l.push(ci as i32)
                    }
                }
            }
        }
    }
    let selected = select(&classes, &[], &spec.classes, &spec.root)?;
    let samples = ids
        .into_iter()
        .map(|id| RawSample {
            path: dir.join("JPEGImages").join(format!("{id}.jpg")),
            labels: labels.remove(&id).unwrap_or_default(),
            sample_id: id,
        })
        .collect();
    Ok((classes, samples, selected))
}

pub(crate) fn imagenet(spec: &DatasetSpec) -> Result<Layout> {
    let split = spec.split.as_deref().unwrap_or("val");
    let root = &spec.root;
    let split_dir = root.join(split);
    if !split_dir.is_dir() {
        return Err(layout_err(root, format!("no `{split}/` folder")));
    }
    // Class order: sorted wnids, as torchvision's ImageFolder. The wnids come from the synset
    // mapping when present (it lists all 1000), else from train/ or the split's folders.
    let mapping = root.join("LOC_synset_mapping.txt");
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    if mapping.is_file() {
        for line in read_to_string(&mapping)?.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (wnid, rest) = line.split_once(' ').unwrap_or((line, line));
            let name = rest.split(',').next().unwrap_or(rest).trim().to_owned();
            names.insert(wnid.to_owned(), name);
        }
    } else {
        let dir = if root.join("train").is_dir() {
            root.join("train")
        } else {
            split_dir.clone()
        };
        for entry in sorted_dir(&dir)? {
            if entry.is_dir() {
                let wnid = file_name(&entry);
                names.insert(wnid.clone(), wnid);
            }
        }
    }
    if names.is_empty() {
        return Err(layout_err(
            root,
            "no classes found (no LOC_synset_mapping.txt and no class folders)",
        ));
    }
    let wnids: Vec<String> = names.keys().cloned().collect();
    let classes: Vec<String> = names.values().cloned().collect();
    let index: HashMap<&str, i32> = wnids
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i as i32))
        .collect();

    let mut samples = Vec::new();
    // Class sub-folders are the folders named like a known wnid; anything else in the split
    // folder (an image, or a broken entry named like one) makes it a flat folder.
    let class_dirs: Vec<PathBuf> = sorted_dir(&split_dir)?
        .into_iter()
        .filter(|p| p.is_dir() && index.contains_key(file_name(p).as_str()))
        .collect();
    if !class_dirs.is_empty() {
        for dir in class_dirs {
            let wnid = file_name(&dir);
            let label = index[wnid.as_str()];
            for file in sorted_dir(&dir)?.into_iter().filter(|p| is_image(p)) {
                samples.push(RawSample {
                    sample_id: file_stem(&file),
                    path: file,
                    labels: vec![label],
                });
            }
        }
    } else {
        // Flat folder: labels from LOC_val_solution.csv (ImageId,PredictionString whose first
        // token is the wnid), or from the CLS-LOC devkit's ground truth (one ILSVRC class id
        // per line, for the images in file-name order) with its map_clsloc.txt (wnid id name).
        let files: Vec<PathBuf> = sorted_dir(&split_dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        let labels = flat_labels(root, &split_dir, split, &index, &files)?;
        for file in files {
            let id = file_stem(&file);
            let label = labels.get(&id).copied();
            samples.push(RawSample {
                sample_id: id,
                path: file,
                labels: label.into_iter().collect(),
            });
        }
    }
    let selected = select(&classes, &wnids, &spec.classes, root)?;
    Ok((classes, samples, selected))
}

/// Labels of a flat ImageNet split folder, by image id (file stem).
fn flat_labels(
    root: &Path,
    split_dir: &Path,
    split: &str,
    index: &HashMap<&str, i32>,
    files: &[PathBuf],
) -> Result<HashMap<String, i32>> {
    let mut labels: HashMap<String, i32> = HashMap::new();
    let solution = [
        root.join(format!("LOC_{split}_solution.csv")),
        split_dir.join(format!("LOC_{split}_solution.csv")),
    ]
    .into_iter()
    .find(|p| p.is_file());
    if let Some(solution) = solution {
        let mut reader =
            csv::Reader::from_path(&solution).map_err(|e| layout_err(&solution, e.to_string()))?;
        for record in reader.records() {
            let record = record.map_err(|e| layout_err(&solution, e.to_string()))?;
            let (Some(id), Some(pred)) = (record.get(0), record.get(1)) else {
                continue;
            };
            let wnid = pred.split_whitespace().next().unwrap_or("");
            let label = *index.get(wnid).ok_or_else(|| {
                layout_err(&solution, format!("image {id}: unknown wnid `{wnid}`"))
            })?;
            labels.insert(id.to_owned(), label);
        }
        return Ok(labels);
    }
    // The devkit: <root>/[devkit/]data/map_clsloc.txt and *_{split}ation_ground_truth.txt.
    let data_dirs = [
        root.join("devkit/data"),
        root.join("data"),
        root.to_path_buf(),
    ];
    let map = data_dirs
        .iter()
        .map(|d| d.join("map_clsloc.txt"))
        .find(|p| p.is_file());
    let truth = data_dirs.iter().find_map(|d| {
        std::fs::read_dir(d)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                let name = file_name(p);
                name.ends_with("_ground_truth.txt") && name.contains(&format!("_{split}"))
            })
    });
    let (Some(map), Some(truth)) = (map, truth) else {
        return Err(layout_err(
            split_dir,
            format!(
                "flat `{split}/` needs LOC_{split}_solution.csv, or the CLS-LOC devkit's \
                 data/map_clsloc.txt and *_{split}ation_ground_truth.txt (the 2012 devkit's \
                 meta.mat is not read: use LOC_{split}_solution.csv or class sub-folders)"
            ),
        ));
    };
    let mut by_id: HashMap<String, i32> = HashMap::new();
    for line in read_to_string(&map)?.lines() {
        let mut parts = line.split_whitespace();
        let (Some(wnid), Some(id)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Some(&label) = index.get(wnid) {
            by_id.insert(id.to_owned(), label);
        }
    }
    let ids: Vec<String> = read_to_string(&truth)?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if ids.len() != files.len() {
        return Err(layout_err(
            &truth,
            format!(
                "{} labels for {} images in {}",
                ids.len(),
                files.len(),
                split_dir.display()
            ),
        ));
    }
    for (file, id) in files.iter().zip(ids) {
        let label = *by_id
            .get(&id)
            .ok_or_else(|| layout_err(&map, format!("class id {id} is not listed")))?;
        labels.insert(file_stem(file), label);
    }
    Ok(labels)
}

pub(crate) fn folder(spec: &DatasetSpec) -> Result<Layout> {
    let root = &spec.root;
    let found: Vec<String> = sorted_dir(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| file_name(&p))
        .filter(|n| !n.starts_with('.'))
        .collect();
    let classes = match &spec.classes {
        Some(list) => {
            let missing: Vec<_> = list
                .iter()
                .filter(|c| !found.contains(c))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(layout_err(
                    root,
                    format!("class folders not found: {}", missing.join(", ")),
                ));
            }
            list.clone()
        }
        None => found,
    };
    if classes.is_empty() {
        return Err(layout_err(root, "no class folders"));
    }
    let mut samples = Vec::new();
    for (ci, class) in classes.iter().enumerate() {
        for file in sorted_dir(&root.join(class))?
            .into_iter()
            .filter(|p| is_image(p))
        {
            samples.push(RawSample {
                sample_id: format!("{class}/{}", file_stem(&file)),
                path: file,
                labels: vec![ci as i32],
            });
        }
    }
    Ok((classes, samples, None))
}

pub(crate) fn manifest(spec: &DatasetSpec) -> Result<Layout> {
    let file = &spec.root;
    let base = file.parent().unwrap_or(Path::new("."));
    let rows: Vec<spray_store::manifest::ManifestRow> =
        match file.extension().and_then(|e| e.to_str()) {
            Some("parquet") => spray_store::manifest::read_parquet(file)
                .map_err(|e| DatasetError::Config(e.to_string()))?,
            _ => read_manifest_csv(file)?,
        };
    // Labels may be class names or indices; names need a class list (given or sorted unique).
    let all_numeric = rows
        .iter()
        .flat_map(|r| r.labels.iter())
        .all(|l| l.parse::<i32>().is_ok());
    let classes: Vec<String> = match (&spec.classes, all_numeric) {
        (Some(list), _) => list.clone(),
        (None, true) => {
            let max = rows
                .iter()
                .flat_map(|r| r.labels.iter())
                .filter_map(|l| l.parse::<i32>().ok())
                .max()
                .unwrap_or(-1);
            (0..=max).map(|i| i.to_string()).collect()
        }
        (None, false) => {
            let mut names: Vec<String> = rows.iter().flat_map(|r| r.labels.clone()).collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let mut samples = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let mut labels = Vec::new();
        for l in &row.labels {
            let index = classes
                .iter()
                .position(|c| c == l)
                .map(|p| p as i32)
                .or_else(|| {
                    l.parse::<i32>()
                        .ok()
                        .filter(|&v| v >= 0 && (v as usize) < classes.len())
                })
                .ok_or_else(|| layout_err(file, format!("row {}: unknown label `{l}`", i + 1)))?;
            labels.push(index);
        }
        let path = if Path::new(&row.path).is_absolute() {
            PathBuf::from(&row.path)
        } else {
            base.join(&row.path)
        };
        samples.push(RawSample {
            sample_id: row.sample_id.unwrap_or_else(|| row.path.clone()),
            path,
            labels,
        });
    }
    Ok((classes, samples, None))
}

fn read_manifest_csv(file: &Path) -> Result<Vec<spray_store::manifest::ManifestRow>> {
    let mut reader = csv::Reader::from_path(file).map_err(|e| layout_err(file, e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| layout_err(file, e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let path_col = column("path").ok_or_else(|| layout_err(file, "no `path` column"))?;
    let label_col = column("labels").or_else(|| column("label"));
    let id_col = column("sample_id");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| layout_err(file, e.to_string()))?;
        let labels = label_col
            .and_then(|c| record.get(c))
            .map(|s| {
                s.split([';', '|'])
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        rows.push(spray_store::manifest::ManifestRow {
            path: record.get(path_col).unwrap_or("").to_owned(),
            labels,
            sample_id: id_col
                .and_then(|c| record.get(c))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        });
    }
    Ok(rows)
}

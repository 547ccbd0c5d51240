//! Relevance computed elsewhere — zennit, Captum, CoRelAy's own pipeline — read from an HDF5
//! file in the layout CoRelAy and ViRelAy use, and written as this stage's dataset (parts and
//! manifest), so the analyze and report stages run on it as on spray's own maps.
//!
//! The file: `attribution` (N, C, H, W), (N, H, W, C) or (N, H, W) floats; `label` (N,) class
//! indices or (N, K) n-hot (bool or integers); `prediction` (N, K) logits, optional; `index`
//! (N,) sample numbers, optional. One map per (sample, label): the channels summed; its
//! `target_logit` is the prediction of that class (0 without predictions), `predicted_class`
//! the prediction's argmax (−1 without). A sample whose map holds NaN or ∞ is skipped and
//! recorded in the part's errors file, as the stage does with its own maps.

use std::path::{Path, PathBuf};

use hdf5_pure::{DType, File};
use spray_store::relevance::{
    self as rel, ErrorRecord, RelevanceLayout, RelevanceManifest, RelevanceRecord,
};
use spray_store::Fingerprint;

use crate::{RelevanceError, Result};

/// What to import, and how the maps are pooled.
pub struct AttributionImport<'a> {
    pub file: &'a Path,
    /// The relevance folder to write (created; an earlier dataset there is replaced).
    pub dir: PathBuf,
    /// The grid the analysis reads (each map is sum-pooled to it).
    pub grid: usize,
    /// Class names by index; none: the indices themselves.
    pub class_names: Option<Vec<String>>,
    /// Samples per part file.
    pub part_size: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    pub samples: usize,
    pub maps: usize,
    pub skipped: usize,
    pub classes: usize,
}

fn bad(file: &Path, reason: impl Into<String>) -> RelevanceError {
    RelevanceError::Attributions {
        path: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// A dataset's values as f64, whatever its numeric type (an integer label, a bool n-hot).
fn values(file: &Path, h5: &File, name: &str) -> Result<Option<(Vec<usize>, Vec<f64>)>> {
    let Ok(ds) = h5.dataset(name) else {
        return Ok(None);
    };
    let err = |e: hdf5_pure::Error| bad(file, format!("`{name}`: {e}"));
    let shape: Vec<usize> = ds
        .shape()
        .map_err(err)?
        .iter()
        .map(|&d| d as usize)
        .collect();
    let dtype = ds.dtype().map_err(err)?;
    // Integer and enum (h5py's bool) datasets are read as integers: reading them as floats
    // is not supported for every width, and reading floats as integers would give bit patterns.
    let v = match dtype {
        DType::F32 | DType::F64 => ds.read_f64().map_err(err)?,
        DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U8
        | DType::U16
        | DType::U32
        | DType::U64
        | DType::Enum(_) => ds
            .read_i64()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        other => return Err(bad(file, format!("`{name}` holds {other}, not numbers"))),
    };
    Ok(Some((shape, v)))
}

/// The maps as (n, h, w, values): channels summed, whichever axis holds them.
fn maps(file: &Path, shape: &[usize], v: &[f64]) -> Result<(usize, usize, usize, Vec<f32>)> {
    match *shape {
        [n, h, w] => Ok((n, h, w, v.iter().map(|&x| x as f32).collect())),
        [n, a, b, c] => {
            // The channel axis is the short one (ViRelAy guesses the same way).
            let (channels_first, ch, h, w) = if a <= c { (true, a, b, c) } else { (false, c, a, b) };
            let mut out = vec![0.0f32; n * h * w];
            for i in 0..n {
                for k in 0..ch {
                    for y in 0..h {
                        for x in 0..w {
                            let at = if channels_first {
                                ((i * ch + k) * h + y) * w + x
                            } else {
                                ((i * h + y) * w + x) * ch + k
                            };
                            out[(i * h + y) * w + x] += v[at] as f32;
                        }
                    }
                }
            }
            Ok((n, h, w, out))
        }
        _ => Err(bad(
            file,
            format!("`attribution` has shape {shape:?}; expected (N, C, H, W), (N, H, W, C) or (N, H, W)"),
        )),
    }
}

/// Each sample's labels: indices, or the positions of the non-zero entries of an n-hot row.
fn labels(file: &Path, shape: &[usize], v: &[f64], n: usize) -> Result<Vec<Vec<i32>>> {
    match *shape {
        [m] if m == n => Ok(v.iter().map(|&l| vec![l as i32]).collect()),
        [m, k] if m == n => Ok((0..n)
            .map(|i| {
                (0..k)
                    .filter(|&j| v[i * k + j] != 0.0)
                    .map(|j| j as i32)
                    .collect()
            })
            .collect()),
        _ => Err(bad(
            file,
            format!(
                "`label` has shape {shape:?} for {n} attributions; expected ({n},) or ({n}, K)"
            ),
        )),
    }
}

/// The file's contents, checked against each other.
struct AttributionFile {
    /// Samples, and each map's height and width.
    n: usize,
    h: usize,
    w: usize,
    /// n maps of h × w, channels summed.
    maps: Vec<f32>,
    /// Each sample's labels.
    labels: Vec<Vec<i32>>,
    /// (K, n × K logits), when the file has predictions.
    prediction: Option<(usize, Vec<f64>)>,
    /// Each sample's number (`index`, else its row).
    index: Vec<i64>,
}

impl AttributionFile {
    fn read(file: &Path) -> Result<Self> {
        let h5 = File::open(file).map_err(|e| bad(file, e.to_string()))?;
        let (shape, v) = values(file, &h5, "attribution")?
            .ok_or_else(|| bad(file, "no `attribution` dataset"))?;
        let (n, h, w, maps) = maps(file, &shape, &v)?;
        let (label_shape, label_values) =
            values(file, &h5, "label")?.ok_or_else(|| bad(file, "no `label` dataset"))?;
        let labels = labels(file, &label_shape, &label_values, n)?;
        let prediction = match values(file, &h5, "prediction")? {
            Some((s, v)) if s.len() == 2 && s[0] == n => Some((s[1], v)),
            Some((s, _)) => {
                return Err(bad(
                    file,
                    format!("`prediction` has shape {s:?}; expected ({n}, K)"),
                ))
            }
            None => None,
        };
        let index = match values(file, &h5, "index")? {
            Some((s, v)) if s == [n] => v.into_iter().map(|x| x as i64).collect(),
            Some((s, _)) => {
                return Err(bad(
                    file,
                    format!("`index` has shape {s:?}; expected ({n},)"),
                ))
            }
            None => (0..n as i64).collect(),
        };
        Ok(AttributionFile {
            n,
            h,
            w,
            maps,
            labels,
            prediction,
            index,
        })
    }

    /// The class names: the given ones, else the label numbers (as many as the predictions
    /// have outputs, or the largest label + 1); every label must name one.
    fn class_names(&self, file: &Path, given: Option<&[String]>) -> Result<Vec<String>> {
        let largest = self.labels.iter().flatten().copied().max().unwrap_or(-1);
        let classes = given.map(<[String]>::to_vec).unwrap_or_else(|| {
            let k = self.prediction.as_ref().map_or(0, |(k, _)| *k);
            let count = k.max((largest + 1).max(0) as usize);
            (0..count).map(|c| c.to_string()).collect()
        });
        if largest >= classes.len() as i32 || self.labels.iter().flatten().any(|&l| l < 0) {
            return Err(bad(
                file,
                format!(
                    "labels run to {largest}, beyond the {} class names",
                    classes.len()
                ),
            ));
        }
        Ok(classes)
    }

    /// Sample i's logits, when the file has predictions.
    fn logits(&self, i: usize) -> Option<&[f64]> {
        self.prediction
            .as_ref()
            .map(|(k, v)| &v[i * k..(i + 1) * k])
    }

    /// Sample i's records (one per label), or its error when its map is not finite.
    fn sample(
        &self,
        i: usize,
        name: &str,
        classes: &[String],
        g: usize,
    ) -> std::result::Result<Vec<RelevanceRecord>, ErrorRecord> {
        let (h, w) = (self.h, self.w);
        let map = &self.maps[i * h * w..(i + 1) * h * w];
        let sample_id = self.index[i].to_string();
        let path = format!("{name}#{}", self.index[i]);
        if map.iter().any(|x| !x.is_finite()) {
            return Err(ErrorRecord {
                image_index: i as i64,
                sample_id,
                path,
                reason: "the attribution holds NaN or infinite values".into(),
            });
        }
        let logits = self.logits(i);
        let predicted = logits.map_or(-1, |l| {
            let best = (0..l.len()).fold(0, |b, j| if l[j] > l[b] { j } else { b });
            best as i32
        });
        let total: f32 = map.iter().sum();
        let grid = rel::sum_pool(map, h, w, g, g);
        Ok(self.labels[i]
            .iter()
            .map(|&class| {
                let target_logit = logits
                    .and_then(|l| l.get(class as usize))
                    .map_or(0.0, |&x| x as f32);
                RelevanceRecord {
                    image_index: i as i64,
                    sample_id: sample_id.clone(),
                    path: path.clone(),
                    class_index: class,
                    class_name: classes[class as usize].clone(),
                    labels: self.labels[i].clone(),
                    target_logit,
                    predicted_class: predicted,
                    relevance_sum: total,
                    conservation_error: if target_logit != 0.0 {
                        ((total - target_logit) / target_logit).abs()
                    } else {
                        0.0
                    },
                    grids: vec![grid.clone()],
                    map: Some((h as i32, w as i32, map.to_vec())),
                    image_grids: Vec::new(),
                    thumbnail: None,
                    concept: None,
                    colour: None,
                    compression: None,
                    logits: None,
                }
            })
            .collect())
    }
}

/// Empties `dir` for a new import — only when an earlier import wrote it (or it is empty): a
/// folder of maps spray computed (hours of a relevance stage, perhaps) is never removed.
fn claim_folder(file: &Path, dir: &Path) -> Result<()> {
    if dir.exists() && !dir.join(IMPORT_MARKER).is_file() && dir_has_entries(dir) {
        return Err(bad(
            file,
            format!(
                "{} holds a relevance dataset this import did not write; choose another output folder",
                dir.display()
            ),
        ));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|source| RelevanceError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Imports `job.file` into `job.dir` as a complete relevance dataset: its parts (and errors
/// files), the manifest, then the marker that lets a later import replace it.
pub fn import_attributions(job: &AttributionImport<'_>) -> Result<ImportSummary> {
    let file = job.file;
    let data = AttributionFile::read(file)?;
    let g = job.grid;
    if g == 0 || data.h < g || data.w < g {
        return Err(bad(
            file,
            format!(
                "maps of {} × {} cannot be pooled to a {g} × {g} grid",
                data.h, data.w
            ),
        ));
    }
    let classes = data.class_names(file, job.class_names.as_deref())?;
    let layout = RelevanceLayout {
        grids: vec![g],
        store_map: true,
        store_images: false,
        concept_layers: Vec::new(),
        colour_stats: false,
        compression_stats: false,
        logits: false,
    };
    claim_folder(file, &job.dir)?;
    let name = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part_size = job.part_size.max(1);
    let parts = data.n.div_ceil(part_size);
    let mut summary = ImportSummary {
        samples: data.n,
        classes: classes.len(),
        ..Default::default()
    };
    for p in 0..parts {
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for i in p * part_size..((p + 1) * part_size).min(data.n) {
            match data.sample(i, &name, &classes, g) {
                Ok(records) => rows.extend(records),
                Err(error) => errors.push(error),
            }
        }
        summary.maps += rows.len();
        summary.skipped += errors.len();
        if !errors.is_empty() {
            rel::write_errors(&rel::errors_path(&job.dir, p), &errors)?;
        }
        rel::write_part(&rel::part_path(&job.dir, p), &layout, &rows)?;
    }
    let manifest = RelevanceManifest {
        fingerprint: Fingerprint::new()
            .bytes(spray_store::file_digest(file)?)
            .json(&(g, &classes, part_size))
            .spray_version()
            .finish(),
        classes,
        images: data.n,
        parts,
        layout,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| bad(file, format!("serialising the manifest: {e}")))?;
    spray_store::write_atomically(&rel::manifest_path(&job.dir), &text)?;
    spray_store::write_atomically(
        &job.dir.join(IMPORT_MARKER),
        file.display().to_string().as_bytes(),
    )?;
    Ok(summary)
}

/// Marks a relevance folder written by [`import_attributions`] (which may replace it).
pub const IMPORT_MARKER: &str = "_imported-from";

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5_pure::FileBuilder;

    /// Four samples of 2 × 8 × 8 (channels first), labels 0, 1, 1, 0, predictions for 2 classes;
    /// sample 2's map has a NaN.
    fn write_file(path: &Path, nhot: bool) {
        let mut attribution = Vec::new();
        for i in 0..4 {
            for c in 0..2 {
                for p in 0..64 {
                    let v = if i == 2 && p == 5 {
                        f32::NAN
                    } else {
                        (i + c) as f32 + p as f32 / 64.0
                    };
                    attribution.push(v);
                }
            }
        }
        let mut f = FileBuilder::new();
        f.create_dataset("attribution")
            .with_f32_data(&attribution)
            .with_shape(&[4, 2, 8, 8]);
        if nhot {
            f.create_dataset("label")
                .with_u8_data(&[1, 0, 0, 1, 1, 1, 1, 0])
                .with_shape(&[4, 2]);
        } else {
            f.create_dataset("label").with_i64_data(&[0, 1, 1, 0]);
        }
        f.create_dataset("prediction")
            .with_f32_data(&[2.0, 1.0, 0.5, 3.0, 1.0, 4.0, 9.0, 0.0])
            .with_shape(&[4, 2]);
        f.create_dataset("index").with_i64_data(&[10, 11, 12, 13]);
        std::fs::write(path, f.finish().unwrap()).unwrap();
    }

    #[test]
    fn attributions_become_a_relevance_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.h5");
        write_file(&file, false);
        let job = AttributionImport {
            file: &file,
            dir: dir.path().join("relevance"),
            grid: 4,
            class_names: Some(vec!["cat".into(), "dog".into()]),
            part_size: 3,
        };
        let summary = import_attributions(&job).unwrap();
        assert_eq!((summary.samples, summary.maps, summary.skipped), (4, 3, 1));
        let (manifest, parts) = rel::finished_parts(&job.dir).unwrap();
        assert_eq!(manifest.classes, vec!["cat", "dog"]);
        assert_eq!(parts.len(), 2);
        let options = rel::ReadOptions {
            grids: vec![4],
            map: true,
            images: false,
            thumbnails: false,
            concept: false,
            colour: false,
            compression: false,
            logits: false,
        };
        let rows: Vec<RelevanceRecord> = parts
            .iter()
            .flat_map(|p| rel::read_part(p, &options).unwrap())
            .collect();
        assert_eq!(
            rows.iter()
                .map(|r| r.sample_id.as_str())
                .collect::<Vec<_>>(),
            ["10", "11", "13"]
        );
        let first = &rows[0];
        assert_eq!((first.class_index, first.class_name.as_str()), (0, "cat"));
        assert_eq!((first.target_logit, first.predicted_class), (2.0, 0));
        // Channels summed (sample 0: p/64 + (1 + p/64)), then sum-pooled 8 × 8 → 4 × 4.
        let (h, w, map) = first.map.as_ref().unwrap();
        assert_eq!((*h, *w), (8, 8));
        assert!((map[3] - (1.0 + 2.0 * 3.0 / 64.0)).abs() < 1e-6);
        let pooled: f32 = first.grids[0].iter().sum();
        assert!((pooled - map.iter().sum::<f32>()).abs() < 1e-3);
        assert_eq!(rows[1].predicted_class, 1);
        let errors = rel::read_errors(&rel::errors_path(&job.dir, 0)).unwrap();
        assert_eq!(errors[0].sample_id, "12");
    }

    #[test]
    fn an_n_hot_label_gives_a_map_per_label_and_bad_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.h5");
        write_file(&file, true);
        let job = AttributionImport {
            file: &file,
            dir: dir.path().join("relevance"),
            grid: 4,
            class_names: None,
            part_size: 10,
        };
        let summary = import_attributions(&job).unwrap();
        // Labels {0}, {1}, {0, 1} (NaN: skipped), {0}.
        assert_eq!((summary.maps, summary.skipped, summary.classes), (3, 1, 2));
        let too_fine = AttributionImport { grid: 16, ..job };
        let e = import_attributions(&too_fine).err().unwrap().to_string();
        assert!(e.contains("cannot be pooled to a 16 × 16 grid"), "{e}");
        // A folder of spray's own maps is not replaced; an earlier import's is.
        let own = dir.path().join("own");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("part-00000.parquet"), b"maps").unwrap();
        let e = import_attributions(&AttributionImport {
            file: &file,
            dir: own.clone(),
            grid: 4,
            class_names: None,
            part_size: 10,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("did not write"), "{e}");
        assert!(own.join("part-00000.parquet").is_file());
        let again = AttributionImport {
            grid: 4,
            ..too_fine
        };
        import_attributions(&again).unwrap();
        let too_fine = AttributionImport { grid: 16, ..again };
        let missing = dir.path().join("none.h5");
        let e = import_attributions(&AttributionImport {
            file: &missing,
            ..too_fine
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("none.h5"), "{e}");
    }
}

//! `spray export virelay`: a finished run as a ViRelAy project, so the people who already use
//! ViRelAy (the viewer of CoRelAy's analyses) can open spray's analysis in it.
//!
//! What ViRelAy 0.6 reads (its `model.py`), and what is written for it:
//! - `project.yaml`: name, model, label map, dataset, attributions, analyses;
//! - `label-map.json`: `[{index, word_net_id, name}]` — `word_net_id` is the category key, so
//!   ViRelAy shows the class name beside each category;
//! - `dataset.h5`: `data` (N, H, W, 3) uint8 (the stored thumbnails) and `label` (N,) int64;
//! - `attributions.h5`: `attribution` (N, 3, h, w) float32 (the stored map, a third in each
//!   channel: ViRelAy sums the channels back), `prediction` (N, K) float32 (spray keeps only the
//!   explained class's logit: the others are 0), `label` (N,) int64, `index` (N,);
//! - `analysis.h5`: per category (class) `index` (the attribution rows), `cluster/spray` and
//!   `cluster/split` (the analysis' clusters and its two-way split), `embedding/spectral` with
//!   attribute `eigenvalue` and `embedding/tsne`.
//!
//! One attribution per analysed map of the relevance space (an image explained for two classes
//! is two attributions, each pointing at its own dataset row).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, FileBuilder};
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};
use spray_store::relevance::RelevanceRecord;

use crate::{ReportError, Result, PRIMARY_SPACE};

/// What to export, and the words the project shows.
pub struct VirelayJob<'a> {
    pub relevance_dir: &'a Path,
    pub analysis_dir: &'a Path,
    /// The project folder (created; its files replaced).
    pub out: PathBuf,
    pub name: String,
    /// The model's file name, as ViRelAy shows it.
    pub model: String,
    /// The composite, shown as the attribution method.
    pub composite: String,
    /// The class the maps explain: its label (`true_label`) or the prediction
    /// (`predicted_label`).
    pub predicted: bool,
}

#[derive(Debug, Clone)]
pub struct VirelaySummary {
    pub project: PathBuf,
    pub attributions: usize,
    pub categories: usize,
}

/// One exported attribution: its record and the analysis' row for it.
struct Row<'a> {
    record: &'a RelevanceRecord,
    sample: &'a SampleEmbedding,
}

/// Writes the ViRelAy project of the run whose stage folders `job` names.
pub fn export_virelay(job: &VirelayJob<'_>) -> Result<VirelaySummary> {
    let (manifest, records) = crate::inputs::read_records(job.relevance_dir, true)?;
    let finest = manifest.layout.grids.iter().copied().max();
    let (spectra, samples) = spray_store::analysis::read_all(job.analysis_dir)?;
    let spectra: BTreeMap<i32, &ClassSpectrum> = spectra
        .iter()
        .filter(|s| s.space == PRIMARY_SPACE && s.class_index >= 0)
        .map(|s| (s.class_index, s))
        .collect();
    let mut by_class: BTreeMap<i32, Vec<Row<'_>>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.space == PRIMARY_SPACE) {
        if let Some(record) = records.get(&(s.image_index, s.class_index)) {
            by_class
                .entry(s.class_index)
                .or_default()
                .push(Row { record, sample: s });
        }
    }
    let rows: Vec<&Row<'_>> = by_class.values().flatten().collect();
    if rows.is_empty() {
        return Err(export_error(
            &job.out,
            "the analysis holds no maps to export".into(),
        ));
    }
    std::fs::create_dir_all(&job.out).map_err(|source| ReportError::CreateDir {
        path: job.out.clone(),
        source,
    })?;
    let categories = category_keys(&manifest.classes);
    write(job, "dataset.h5", dataset_file(&rows, finest)?)?;
    write(
        job,
        "attributions.h5",
        attribution_file(&rows, manifest.classes.len(), finest)?,
    )?;
    write(
        job,
        "analysis.h5",
        analysis_file(&by_class, &spectra, &categories)?,
    )?;
    write(
        job,
        "label-map.json",
        label_map(&manifest.classes, &categories),
    )?;
    let project = job.out.join("project.yaml");
    write(job, "project.yaml", project_yaml(job).into_bytes())?;
    Ok(VirelaySummary {
        project,
        attributions: rows.len(),
        categories: by_class.len(),
    })
}

fn export_error(path: &Path, reason: String) -> ReportError {
    ReportError::Export {
        path: path.to_path_buf(),
        reason,
    }
}

fn write(job: &VirelayJob<'_>, name: &str, bytes: Vec<u8>) -> Result<()> {
    spray_store::write_atomically(&job.out.join(name), &bytes)?;
    Ok(())
}

/// HDF5 group names cannot hold `/` (a path separator) or be `.`; class names can.
fn category_keys(classes: &[String]) -> Vec<String> {
    classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = c.replace('/', "_");
            if key.is_empty() || key == "." || key == ".." {
                format!("class-{i}")
            } else {
                key
            }
        })
        .collect()
}

/// A record's map as (h, w, values): the stored map, else the finest stored grid.
fn map_of(r: &RelevanceRecord, finest: Option<usize>) -> Option<(usize, usize, &[f32])> {
    if let Some((h, w, m)) = &r.map {
        return Some((*h as usize, *w as usize, m.as_slice()));
    }
    let g = finest?;
    r.grids.first().map(|grid| (g, g, grid.as_slice()))
}

fn attribution_file(rows: &[&Row<'_>], classes: usize, finest: Option<usize>) -> Result<Vec<u8>> {
    let Some((h, w, _)) = map_of(rows[0].record, finest) else {
        return Err(export_error(
            Path::new("attributions.h5"),
            "the relevance stage stored neither maps nor grids".into(),
        ));
    };
    let n = rows.len();
    let mut attribution = Vec::with_capacity(n * 3 * h * w);
    let mut prediction = vec![0.0f32; n * classes.max(1)];
    let mut label = Vec::with_capacity(n);
    for (i, row) in rows.iter().enumerate() {
        let r = row.record;
        let (mh, mw, m) = map_of(r, finest).unwrap_or((0, 0, &[]));
        if (mh, mw) != (h, w) {
            return Err(export_error(
                Path::new("attributions.h5"),
                format!(
                    "{}: a {mh} × {mw} map beside {h} × {w} ones (ViRelAy needs one size)",
                    r.sample_id
                ),
            ));
        }
        for _ in 0..3 {
            attribution.extend(m.iter().map(|v| v / 3.0));
        }
        if let Ok(c) = usize::try_from(r.class_index) {
            if c < classes {
                prediction[i * classes + c] = r.target_logit;
            }
        }
        label.push(i64::from(r.class_index));
    }
    let mut f = FileBuilder::new();
    f.create_dataset("attribution")
        .with_f32_data(&attribution)
        .with_shape(&[n as u64, 3, h as u64, w as u64]);
    f.create_dataset("prediction")
        .with_f32_data(&prediction)
        .with_shape(&[n as u64, classes.max(1) as u64]);
    f.create_dataset("label").with_i64_data(&label);
    f.create_dataset("index")
        .with_i64_data(&(0..n as i64).collect::<Vec<_>>());
    finish(f, "attributions.h5")
}

fn dataset_file(rows: &[&Row<'_>], finest: Option<usize>) -> Result<Vec<u8>> {
    let decoded: Vec<Option<image::RgbImage>> = rows
        .iter()
        .map(|row| {
            let png = row.record.thumbnail.as_deref()?;
            image::load_from_memory(png).ok().map(|i| i.to_rgb8())
        })
        .collect();
    // Every sample one size: the first thumbnail's, else the map's (black images).
    let (h, w) = decoded
        .iter()
        .flatten()
        .next()
        .map(|i| (i.height() as usize, i.width() as usize))
        .or_else(|| map_of(rows[0].record, finest).map(|(h, w, _)| (h, w)))
        .unwrap_or((1, 1));
    let n = rows.len();
    let mut data = vec![0u8; n * h * w * 3];
    for (i, img) in decoded.iter().enumerate() {
        if let Some(img) = img
            .as_ref()
            .filter(|i| (i.height() as usize, i.width() as usize) == (h, w))
        {
            data[i * h * w * 3..(i + 1) * h * w * 3].copy_from_slice(img.as_raw());
        }
    }
    let label: Vec<i64> = rows
        .iter()
        .map(|r| i64::from(r.record.class_index))
        .collect();
    let mut f = FileBuilder::new();
    f.create_dataset("data")
        .with_u8_data(&data)
        .with_shape(&[n as u64, h as u64, w as u64, 3]);
    f.create_dataset("label").with_i64_data(&label);
    finish(f, "dataset.h5")
}

fn analysis_file(
    by_class: &BTreeMap<i32, Vec<Row<'_>>>,
    spectra: &BTreeMap<i32, &ClassSpectrum>,
    categories: &[String],
) -> Result<Vec<u8>> {
    let mut f = FileBuilder::new();
    let mut start = 0i64;
    for (&class, rows) in by_class {
        let n = rows.len();
        let key = usize::try_from(class)
            .ok()
            .and_then(|c| categories.get(c))
            .cloned()
            .unwrap_or_else(|| format!("class-{class}"));
        let mut group = f.create_group(&key);
        group
            .create_dataset("index")
            .with_i64_data(&(start..start + n as i64).collect::<Vec<_>>());
        start += n as i64;
        let mut clusters = group.create_group("cluster");
        clusters.create_dataset("spray").with_i64_data(
            &rows
                .iter()
                .map(|r| i64::from(r.sample.cluster))
                .collect::<Vec<_>>(),
        );
        clusters.create_dataset("split").with_i64_data(
            &rows
                .iter()
                .map(|r| i64::from(r.sample.split))
                .collect::<Vec<_>>(),
        );
        group.add_group(clusters.finish());
        let mut embeddings = group.create_group("embedding");
        let k = rows
            .iter()
            .map(|r| r.sample.spectral.len())
            .min()
            .unwrap_or(0)
            .max(1);
        let spectral: Vec<f32> = rows
            .iter()
            .flat_map(|r| (0..k).map(move |j| r.sample.spectral.get(j).copied().unwrap_or(0.0)))
            .collect();
        let eigenvalues: Vec<f64> = spectra
            .get(&class)
            .map(|s| s.eigenvalues.clone())
            .unwrap_or_default();
        embeddings
            .create_dataset("spectral")
            .with_f32_data(&spectral)
            .with_shape(&[n as u64, k as u64])
            .set_attr("eigenvalue", AttrValue::F64Array(eigenvalues));
        let tsne: Vec<f32> = rows
            .iter()
            .flat_map(|r| [r.sample.tsne_x, r.sample.tsne_y])
            .collect();
        embeddings
            .create_dataset("tsne")
            .with_f32_data(&tsne)
            .with_shape(&[n as u64, 2]);
        group.add_group(embeddings.finish());
        f.add_group(group.finish());
    }
    finish(f, "analysis.h5")
}

fn finish(f: FileBuilder, name: &str) -> Result<Vec<u8>> {
    f.finish()
        .map_err(|e| export_error(Path::new(name), format!("writing HDF5: {e}")))
}

fn label_map(classes: &[String], categories: &[String]) -> Vec<u8> {
    let labels: Vec<serde_json::Value> = classes
        .iter()
        .zip(categories)
        .enumerate()
        .map(|(i, (name, key))| serde_json::json!({"index": i, "word_net_id": key, "name": name}))
        .collect();
    serde_json::to_vec_pretty(&labels).unwrap_or_default()
}

/// YAML by hand: every value a JSON string, which YAML reads as a double-quoted scalar.
fn project_yaml(job: &VirelayJob<'_>) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "project:\n  name: {name}\n  model: {model}\n  label_map: \"label-map.json\"\n  \
         dataset:\n    name: {name}\n    type: \"hdf5\"\n    path: \"dataset.h5\"\n  \
         attributions:\n    attribution_method: {method}\n    attribution_strategy: {strategy}\n    \
         sources:\n      - \"attributions.h5\"\n  analyses:\n    - analysis_method: \"spectral_analysis\"\n      \
         sources:\n        - \"analysis.h5\"\n",
        name = q(&job.name),
        model = q(&job.model),
        method = q(&format!("LRP ({})", job.composite)),
        strategy = q(if job.predicted { "predicted_label" } else { "true_label" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_keys_are_hdf5_names() {
        let classes = vec!["cat".to_string(), "a/b".into(), "".into(), ".".into()];
        assert_eq!(
            category_keys(&classes),
            vec!["cat", "a_b", "class-2", "class-3"]
        );
    }

    #[test]
    fn the_project_file_quotes_what_comes_from_data() {
        let job = VirelayJob {
            relevance_dir: Path::new("r"),
            analysis_dir: Path::new("a"),
            out: PathBuf::from("o"),
            name: "demo: \"shapes\"".into(),
            model: "m.onnx".into(),
            composite: "epsilon-plus-flat".into(),
            predicted: false,
        };
        let text = project_yaml(&job);
        assert!(
            text.contains("  name: \"demo: \\\"shapes\\\"\"\n"),
            "{text}"
        );
        assert!(text.contains("attribution_strategy: \"true_label\""));
        assert!(text.contains("analysis_method: \"spectral_analysis\""));
    }
}

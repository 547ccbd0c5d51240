//! Stage 2's output, one pair of files per analysed group (a class, or `all`):
//! `<out>/analysis/spectrum-<group>.parquet` (one row per feature space: the eigen-spectrum
//! and scores) and `<out>/analysis/samples-<group>.parquet` (one row per sample and space:
//! cluster, t-SNE coordinates, spectral embedding).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::columns;
use crate::io::{io_err, parquet_err};
use crate::{write_batches_atomically, Result, StoreError};

pub use crate::space::FeatureSpace;

/// The spectrum of one group in one feature space.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSpectrum {
    /// Class index, or −1 for the group of all samples.
    pub class_index: i32,
    pub class_name: String,
    pub space: FeatureSpace,
    pub n: i64,
    /// Neighbours per vertex in the kNN graph.
    pub knn_k: i32,
    /// The smallest eigenvalues of the Laplacian, ascending.
    pub eigenvalues: Vec<f64>,
    /// `gaps[i] = eigenvalues[i+1] − eigenvalues[i]`.
    pub gaps: Vec<f64>,
    /// Largest gap among gaps[1..] (the first gap separates λ1 = 0 from the rest and says
    /// nothing about structure), and its 1-based position i (between λi and λi+1).
    pub largest_gap: f64,
    pub largest_gap_index: i32,
    /// Clusters suggested by the eigengap, and the number used for clustering.
    pub estimated_clusters: i32,
    pub clusters: i32,
    /// Eigenvalues below the near-zero threshold (≈ connected components).
    pub near_zero: i32,
    pub lambda2: f64,
    /// The score the ranking criterion produced (larger = more suspicious).
    pub score: f64,
    /// The cluster that stands out most by the contrast criterion, and why.
    pub contrast: ClusterContrast,
    /// The cluster most cut off from the rest (the largest separation; ties to the smaller
    /// cluster, then the smaller label), with its mass shift. Why beside `contrast`: the
    /// criterion weighs the mass shift too, so the cluster it names can be less cut off than
    /// another — a cluster that keeps 99% of its kNN edges inside but carries as much
    /// relevance as the rest (a printed date on a held-out ResNet) lost to one that keeps 90%
    /// with a larger shift, and the report said no cluster was cut off.
    pub cut_off: ClusterContrast,
}

impl ClassSpectrum {
    /// The analysed group (`class_index`, −1 for every sample).
    pub fn group(&self) -> crate::AnalysisGroup {
        crate::AnalysisGroup::from_index(self.class_index)
    }
}

/// How strongly one cluster of a group stands apart from the rest of it: the kNN graph
/// separates it (1 − conductance of the cut around it) and its explanations carry a different
/// amount of relevance (shift of the mean log relevance mass, in standard deviations of the
/// group). A shortcut makes a model confident on the images that carry it — relevance is
/// conserved, so its maps carry more mass — and sits in a region of its own, so both are large;
/// natural modes of a class tend to differ in where the relevance is but not in how much.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClusterContrast {
    /// The cluster's label, −1 when no cluster qualified (e.g. a group of one cluster).
    pub cluster: i32,
    /// Its share of the group.
    pub share: f64,
    /// 1 − conductance of the cut between the cluster and the rest, in [0, 1].
    pub separation: f64,
    /// (mean log mass of the cluster − mean log mass of the rest) / standard deviation of the
    /// group's log mass. Positive: the cluster's maps carry more relevance.
    pub magnitude_shift: f64,
}

impl ClusterContrast {
    /// separation × (1 + |magnitude shift|): a cut-off cluster whose maps also carry a
    /// different amount of relevance scores up to several times one that differs only in
    /// where its relevance lies; with masses that carry no information (all equal) it is the
    /// separation alone.
    pub fn score(&self) -> f64 {
        if self.cluster < 0 {
            0.0
        } else {
            self.separation * (1.0 + self.magnitude_shift.abs())
        }
    }
}

/// One sample's place in its group's analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleEmbedding {
    pub class_index: i32,
    pub space: FeatureSpace,
    pub image_index: i64,
    pub sample_id: String,
    pub path: String,
    pub cluster: i32,
    pub tsne_x: f32,
    pub tsne_y: f32,
    /// Rows of the spectral embedding (first `clusters` eigenvectors, row-normalised).
    pub spectral: Vec<f32>,
    /// Distance to the cluster's centre in the spectral embedding (small = typical).
    pub centrality: f32,
    /// The sample's side (0 or 1) of the group's best two-way spectral split (k-means with
    /// k = 2 on the first two eigenvectors' rows); equal to `cluster` when that has 2 clusters.
    pub split: i32,
}

/// The version of the spectrum and samples tables, part of the analysis fingerprint: a cached
/// analysis written with other columns is stale, not unreadable. 2: the contrast columns and
/// the samples' `split`. 3: the concept spaces (`space = concept-<i>`). 4: the colour space.
/// 5: the `cut_off_*` columns.
pub const SCHEMA_VERSION: u32 = 5;

fn spectrum_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("class_index", DataType::Int32, false),
        Field::new("class_name", DataType::Utf8, false),
        Field::new("space", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
        Field::new("knn_k", DataType::Int32, false),
        Field::new("eigenvalues", columns::list_type(DataType::Float64), false),
        Field::new("gaps", columns::list_type(DataType::Float64), false),
        Field::new("largest_gap", DataType::Float64, false),
        Field::new("largest_gap_index", DataType::Int32, false),
        Field::new("estimated_clusters", DataType::Int32, false),
        Field::new("clusters", DataType::Int32, false),
        Field::new("near_zero", DataType::Int32, false),
        Field::new("lambda2", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
        Field::new("contrast_cluster", DataType::Int32, false),
        Field::new("contrast_share", DataType::Float64, false),
        Field::new("contrast_separation", DataType::Float64, false),
        Field::new("contrast_magnitude_shift", DataType::Float64, false),
        Field::new("cut_off_cluster", DataType::Int32, false),
        Field::new("cut_off_share", DataType::Float64, false),
        Field::new("cut_off_separation", DataType::Float64, false),
        Field::new("cut_off_magnitude_shift", DataType::Float64, false),
    ]))
}

fn samples_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("class_index", DataType::Int32, false),
        Field::new("space", DataType::Utf8, false),
        Field::new("image_index", DataType::Int64, false),
        Field::new("sample_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("cluster", DataType::Int32, false),
        Field::new("tsne_x", DataType::Float32, false),
        Field::new("tsne_y", DataType::Float32, false),
        Field::new("spectral", columns::list_type(DataType::Float32), false),
        Field::new("centrality", DataType::Float32, false),
        Field::new("split", DataType::Int32, false),
    ]))
}

/// Write one group's spectra and samples. The samples file is written first, so a group whose
/// spectrum file exists is complete.
pub fn write_group(
    spectrum_path: &Path,
    samples_path: &Path,
    spectra: &[ClassSpectrum],
    samples: &[SampleEmbedding],
) -> Result<()> {
    let arrays: Vec<ArrayRef> = vec![
        columns::i32s(samples.iter().map(|s| s.class_index)),
        columns::strings(samples.iter().map(|s| s.space.to_string())),
        columns::i64s(samples.iter().map(|s| s.image_index)),
        columns::strings(samples.iter().map(|s| &s.sample_id)),
        columns::strings(samples.iter().map(|s| &s.path)),
        columns::i32s(samples.iter().map(|s| s.cluster)),
        columns::f32s(samples.iter().map(|s| s.tsne_x)),
        columns::f32s(samples.iter().map(|s| s.tsne_y)),
        columns::list_f32(
            &samples
                .iter()
                .map(|s| s.spectral.clone())
                .collect::<Vec<_>>(),
        ),
        columns::f32s(samples.iter().map(|s| s.centrality)),
        columns::i32s(samples.iter().map(|s| s.split)),
    ];
    let batch =
        RecordBatch::try_new(samples_schema(), arrays).map_err(|e| parquet_err(samples_path, e))?;
    write_batches_atomically(samples_path, samples_schema(), &[batch])?;

    let arrays: Vec<ArrayRef> = vec![
        columns::i32s(spectra.iter().map(|s| s.class_index)),
        columns::strings(spectra.iter().map(|s| &s.class_name)),
        columns::strings(spectra.iter().map(|s| s.space.to_string())),
        columns::i64s(spectra.iter().map(|s| s.n)),
        columns::i32s(spectra.iter().map(|s| s.knn_k)),
        columns::list_f64(
            &spectra
                .iter()
                .map(|s| s.eigenvalues.clone())
                .collect::<Vec<_>>(),
        ),
        columns::list_f64(&spectra.iter().map(|s| s.gaps.clone()).collect::<Vec<_>>()),
        columns::f64s(spectra.iter().map(|s| s.largest_gap)),
        columns::i32s(spectra.iter().map(|s| s.largest_gap_index)),
        columns::i32s(spectra.iter().map(|s| s.estimated_clusters)),
        columns::i32s(spectra.iter().map(|s| s.clusters)),
        columns::i32s(spectra.iter().map(|s| s.near_zero)),
        columns::f64s(spectra.iter().map(|s| s.lambda2)),
        columns::f64s(spectra.iter().map(|s| s.score)),
        columns::i32s(spectra.iter().map(|s| s.contrast.cluster)),
        columns::f64s(spectra.iter().map(|s| s.contrast.share)),
        columns::f64s(spectra.iter().map(|s| s.contrast.separation)),
        columns::f64s(spectra.iter().map(|s| s.contrast.magnitude_shift)),
        columns::i32s(spectra.iter().map(|s| s.cut_off.cluster)),
        columns::f64s(spectra.iter().map(|s| s.cut_off.share)),
        columns::f64s(spectra.iter().map(|s| s.cut_off.separation)),
        columns::f64s(spectra.iter().map(|s| s.cut_off.magnitude_shift)),
    ];
    let batch = RecordBatch::try_new(spectrum_schema(), arrays)
        .map_err(|e| parquet_err(spectrum_path, e))?;
    write_batches_atomically(spectrum_path, spectrum_schema(), &[batch])
}

pub fn read_spectra(path: &Path) -> Result<Vec<ClassSpectrum>> {
    columns::read_rows(path, |c| {
        let batch = c.batch;
        let mut out = Vec::new();
        let class_index = c.i32s("class_index")?;
        let class_name = c.strings("class_name")?;
        let space = c.parsed::<FeatureSpace>("space")?;
        let n = c.i64s("n")?;
        let knn_k = c.i32s("knn_k")?;
        let eig = c.f64_rows("eigenvalues")?;
        let gaps = c.f64_rows("gaps")?;
        let largest_gap = c.f64s("largest_gap")?;
        let largest_gap_index = c.i32s("largest_gap_index")?;
        let est = c.i32s("estimated_clusters")?;
        let clusters = c.i32s("clusters")?;
        let near_zero = c.i32s("near_zero")?;
        let lambda2 = c.f64s("lambda2")?;
        let score = c.f64s("score")?;
        let contrast_cluster = c.i32s("contrast_cluster")?;
        let contrast_share = c.f64s("contrast_share")?;
        let contrast_separation = c.f64s("contrast_separation")?;
        let contrast_shift = c.f64s("contrast_magnitude_shift")?;
        let cut_cluster = c.i32s("cut_off_cluster")?;
        let cut_share = c.f64s("cut_off_share")?;
        let cut_separation = c.f64s("cut_off_separation")?;
        let cut_shift = c.f64s("cut_off_magnitude_shift")?;
        for i in 0..batch.num_rows() {
            out.push(ClassSpectrum {
                class_index: class_index[i],
                class_name: class_name[i].clone(),
                space: space[i],
                n: n[i],
                knn_k: knn_k[i],
                eigenvalues: eig[i].clone(),
                gaps: gaps[i].clone(),
                largest_gap: largest_gap[i],
                largest_gap_index: largest_gap_index[i],
                estimated_clusters: est[i],
                clusters: clusters[i],
                near_zero: near_zero[i],
                lambda2: lambda2[i],
                score: score[i],
                contrast: ClusterContrast {
                    cluster: contrast_cluster[i],
                    share: contrast_share[i],
                    separation: contrast_separation[i],
                    magnitude_shift: contrast_shift[i],
                },
                cut_off: ClusterContrast {
                    cluster: cut_cluster[i],
                    share: cut_share[i],
                    separation: cut_separation[i],
                    magnitude_shift: cut_shift[i],
                },
            });
        }
        Ok(out)
    })
}

pub fn read_samples(path: &Path) -> Result<Vec<SampleEmbedding>> {
    columns::read_rows(path, |c| {
        let batch = c.batch;
        let mut out = Vec::new();
        let class_index = c.i32s("class_index")?;
        let space = c.parsed::<FeatureSpace>("space")?;
        let image_index = c.i64s("image_index")?;
        let sample_id = c.strings("sample_id")?;
        let paths = c.strings("path")?;
        let cluster = c.i32s("cluster")?;
        let x = c.f32s("tsne_x")?;
        let y = c.f32s("tsne_y")?;
        let spectral = c.f32_rows("spectral")?;
        let centrality = c.f32s("centrality")?;
        let split = c.i32s("split")?;
        for i in 0..batch.num_rows() {
            out.push(SampleEmbedding {
                class_index: class_index[i],
                space: space[i],
                image_index: image_index[i],
                sample_id: sample_id[i].clone(),
                path: paths[i].clone(),
                cluster: cluster[i],
                tsne_x: x[i],
                tsne_y: y[i],
                spectral: spectral[i].clone(),
                centrality: centrality[i],
                split: split[i],
            });
        }
        Ok(out)
    })
}

/// The group's part of the file names (`c00007`, `all`): [`crate::AnalysisGroup::file_name`].
pub fn group_name(class_index: i32) -> String {
    crate::AnalysisGroup::from_index(class_index).file_name()
}

pub fn spectrum_path(dir: &Path, class_index: i32) -> PathBuf {
    dir.join(format!("spectrum-{}.parquet", group_name(class_index)))
}

pub fn samples_path(dir: &Path, class_index: i32) -> PathBuf {
    dir.join(format!("samples-{}.parquet", group_name(class_index)))
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnalysisManifest {
    pub fingerprint: String,
    /// Class indices of the groups (−1 = all samples), in order.
    pub groups: Vec<i32>,
}

pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("_analysis.json")
}

/// The finished analysis: all groups' spectra and samples; an error names missing groups.
pub fn read_all(dir: &Path) -> Result<(Vec<ClassSpectrum>, Vec<SampleEmbedding>)> {
    let groups = finished_groups(dir)?;
    let mut spectra = Vec::new();
    let mut samples = Vec::new();
    for &c in &groups {
        spectra.extend(read_spectra(&spectrum_path(dir, c))?);
        samples.extend(read_samples(&samples_path(dir, c))?);
    }
    Ok((spectra, samples))
}

/// The spectra of a finished analysis only (what ranking needs; the samples are not read).
pub fn read_all_spectra(dir: &Path) -> Result<Vec<ClassSpectrum>> {
    let mut spectra = Vec::new();
    for c in finished_groups(dir)? {
        spectra.extend(read_spectra(&spectrum_path(dir, c))?);
    }
    Ok(spectra)
}

/// The groups of a finished analysis; an error names those not analysed yet.
pub(crate) fn finished_groups(dir: &Path) -> Result<Vec<i32>> {
    let path = manifest_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let manifest: AnalysisManifest = serde_json::from_str(&text)
        .map_err(|e| StoreError::Incomplete(format!("{}: {e}", path.display())))?;
    let missing: Vec<i32> = manifest
        .groups
        .iter()
        .copied()
        .filter(|&c| !spectrum_path(dir, c).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Incomplete(format!(
            "{}: {} of {} groups not analysed yet (classes {:?}); run the remaining analyze shards",
            dir.display(),
            missing.len(),
            manifest.groups.len(),
            &missing[..missing.len().min(8)]
        )));
    }
    Ok(manifest.groups)
}

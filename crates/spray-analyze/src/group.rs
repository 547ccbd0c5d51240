//! SpRAy on one group of points in one feature space (thesis Algorithm 3): the kNN graph, the
//! smallest eigenpairs of its Laplacian, the reading of the spectrum, the clusters of the
//! spectral embedding, the strongest cluster's contrast, and the 2-D layout.

use ndarray16::Array2;
use spray_store::analysis::{ClassSpectrum, SampleEmbedding};

use crate::eigen::{self, Eigenpairs};
use crate::error::{AnalyzeError, Result};
use crate::graph::{KnnGraph, KnnTable};
use crate::progress::{self, StepObserver};
use crate::search::NeighbourSearch;
use crate::settings::AnalysisSettings;
use crate::spectrum::SpectrumReading;
use crate::{contrast, embed};
use spray_store::space::Layout2d;

/// Eigenvectors whose principal axes start t-SNE (see `embed::tsne_init`).
pub const TSNE_INIT_EIGENVECTORS: usize = 10;

/// The points of one group in one feature space.
pub struct GroupPoints {
    pub class_index: i32,
    pub class_name: String,
    pub space: spray_store::FeatureSpace,
    /// (image_index, sample_id, path) per row.
    pub ids: Vec<(i64, String, String)>,
    pub features: Array2<f32>,
    /// Each row's L1 mass before normalisation (`contrast::relevance_mass`); `None`: the L1
    /// mass of the feature row itself.
    pub mass: Option<Vec<f64>>,
}

/// Everything computed for one group, before it is written.
pub struct GroupAnalysis {
    pub spectrum: ClassSpectrum,
    pub samples: Vec<SampleEmbedding>,
    pub eigenpairs: Eigenpairs,
}

/// SpRAy on one group of points.
pub fn analyze_group(points: &GroupPoints, settings: &AnalysisSettings) -> Result<GroupAnalysis> {
    analyze_group_observed(points, settings, &progress::Silent)
}

/// [`analyze_group`], reporting each step to `progress`.
pub fn analyze_group_observed(
    points: &GroupPoints,
    settings: &AnalysisSettings,
    progress: &dyn StepObserver,
) -> Result<GroupAnalysis> {
    check_finite(points)?;
    let n = points.features.nrows();
    let seed = group_seed(settings.seed, points.class_index);
    // One neighbour search for both the graph (k) and Barnes–Hut t-SNE (3·perplexity).
    let search = NeighbourSearch::plan(n, settings);
    let wide = search.run(points.features.view(), seed, progress);
    let graph = KnnGraph::build(
        &wide.truncated(search.graph_k),
        settings.weight,
        settings.symmetrize,
    );
    let pairs = eigenpairs(&graph, settings, seed, progress)?;
    let reading = SpectrumReading::of(&pairs.values, settings);
    let clusters = reading.clusters(settings, pairs.vectors.ncols(), n);
    let embedding =
        embed::laplacian_embedding(settings.laplacian, pairs.vectors.view(), &graph, clusters);
    progress.start("clustering", 0);
    let partition = Partition::find(&embedding, &pairs, n, clusters, settings, seed)?;
    let compared = contrast::clusters(&graph, &partition.labels, &masses(points));
    let strongest = contrast::strongest_of(&compared);
    let score = reading.score(settings.rank_by, &strongest);
    let coords = lay_out(points, &graph, &search, &wide, &pairs, settings, progress);
    let samples = sample_rows(points, &partition, &embedding, &coords);
    Ok(GroupAnalysis {
        spectrum: ClassSpectrum {
            class_index: points.class_index,
            class_name: points.class_name.clone(),
            space: points.space,
            n: n as i64,
            knn_k: graph.k as i32,
            eigenvalues: pairs.values.clone(),
            gaps: reading.gaps,
            largest_gap: reading.largest_gap,
            largest_gap_index: reading.largest_gap_index,
            estimated_clusters: reading.estimated,
            clusters: clusters as i32,
            near_zero: reading.near_zero,
            lambda2: reading.lambda2,
            score,
            contrast: strongest,
            cut_off: contrast::most_cut_off(&compared),
        },
        samples,
        eigenpairs: pairs,
    })
}

/// The group's own seed: the settings' seed mixed with its class.
fn group_seed(seed: u64, class_index: i32) -> u64 {
    seed ^ (class_index as i64 as u64).wrapping_mul(0x9E37_79B9)
}

/// The smallest eigenpairs of the graph's Laplacian. The Laplacian is a second copy of the
/// graph's sparsity (0.4 GB at 1.28M maps) that nothing after the eigenpairs reads, so it
/// lives only here.
fn eigenpairs(
    graph: &KnnGraph,
    settings: &AnalysisSettings,
    seed: u64,
    progress: &dyn StepObserver,
) -> Result<Eigenpairs> {
    let laplacian = graph.laplacian(settings.laplacian);
    progress.start("eigenpairs", 0);
    eigen::smallest(
        &laplacian,
        settings.eigenvalues,
        settings.solver,
        settings.dense_limit,
        seed,
    )
}

/// The group's clusters in the spectral embedding, each member's distance to its cluster's
/// centre, and the best two-way split.
struct Partition {
    labels: Vec<i32>,
    centrality: Vec<f32>,
    /// The best two-way split as a second, coarser grouping
    /// (spray_store::verify::ClusterLevel): the clustering when it has two clusters, else
    /// k-means with k = 2 on the NJW rows of the first two eigenvectors (the relaxed
    /// normalised cut).
    split: Vec<i32>,
}

impl Partition {
    fn find(
        embedding: &Array2<f64>,
        pairs: &Eigenpairs,
        n: usize,
        clusters: usize,
        settings: &AnalysisSettings,
        seed: u64,
    ) -> Result<Partition> {
        let labels = embed::cluster(
            embedding,
            clusters,
            settings.cluster_method,
            settings.kmeans_restarts,
            seed,
            settings.dbscan_eps,
        )?;
        let centrality = embed::centrality(embedding, &labels);
        let split = if clusters == 2 || n < 2 || pairs.vectors.ncols() < 2 {
            labels.clone()
        } else {
            embed::two_way_split(pairs.vectors.view(), settings.kmeans_restarts, seed)?
        };
        Ok(Partition {
            labels,
            centrality,
            split,
        })
    }
}

/// Each row's mass: the given one, else the L1 mass of its features.
fn masses(points: &GroupPoints) -> Vec<f64> {
    points.mass.clone().unwrap_or_else(|| {
        points
            .features
            .rows()
            .into_iter()
            .map(contrast::relevance_mass)
            .collect()
    })
}

/// The 2-D layout of the group's samples, from the spectral start (deterministic and already
/// cluster-aware): t-SNE from it, or the start itself, as the space asks.
fn lay_out(
    points: &GroupPoints,
    graph: &KnnGraph,
    search: &NeighbourSearch,
    wide: &KnnTable,
    pairs: &Eigenpairs,
    settings: &AnalysisSettings,
    progress: &dyn StepObserver,
) -> Vec<[f32; 2]> {
    let init = embed::tsne_init(pairs.vectors.view(), TSNE_INIT_EIGENVECTORS);
    match points.space.spec().layout {
        Layout2d::SpectralStart => init.iter().map(|p| [p[0] as f32, p[1] as f32]).collect(),
        Layout2d::Tsne => embed::tsne_observed(
            points.features.view(),
            graph,
            search.tsne_table(wide).as_deref(),
            &init,
            &settings.tsne,
            progress,
        ),
    }
}

/// One output row per sample.
fn sample_rows(
    points: &GroupPoints,
    partition: &Partition,
    embedding: &Array2<f64>,
    coords: &[[f32; 2]],
) -> Vec<SampleEmbedding> {
    (0..points.features.nrows())
        .map(|i| SampleEmbedding {
            class_index: points.class_index,
            space: points.space,
            image_index: points.ids[i].0,
            sample_id: points.ids[i].1.clone(),
            path: points.ids[i].2.clone(),
            cluster: partition.labels[i],
            tsne_x: coords[i][0],
            tsne_y: coords[i][1],
            spectral: embedding.row(i).iter().map(|&v| v as f32).collect(),
            centrality: partition.centrality[i],
            split: partition.split[i],
        })
        .collect()
}

/// Refuse features with NaN or ∞, naming the samples: one such row makes every distance to it
/// NaN, and the eigensolver then returns a spectrum that looks like a result but is not.
fn check_finite(points: &GroupPoints) -> Result<()> {
    let bad: Vec<usize> = points
        .features
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let samples = bad
        .iter()
        .take(5)
        .map(|&i| {
            points
                .ids
                .get(i)
                .map_or_else(|| format!("row {i}"), |id| format!("'{}'", id.1))
        })
        .collect();
    Err(AnalyzeError::NonFinite {
        group: points.class_name.clone(),
        space: points.space,
        count: bad.len(),
        total: points.features.nrows(),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spray_store::FeatureSpace;

    fn points(features: Array2<f32>, space: FeatureSpace) -> GroupPoints {
        GroupPoints {
            class_index: 3,
            class_name: "cat".into(),
            space,
            ids: (0..features.nrows())
                .map(|i| (i as i64, format!("s{i}"), format!("{i}.png")))
                .collect(),
            features,
            mass: None,
        }
    }

    #[test]
    fn non_finite_rows_are_named_up_to_five() {
        let mut f = Array2::<f32>::zeros((10, 2));
        for i in [1, 2, 4, 5, 6, 8] {
            f[[i, 0]] = f32::NAN;
        }
        f[[9, 1]] = f32::INFINITY;
        let Err(AnalyzeError::NonFinite {
            count,
            total,
            samples,
            space,
            ..
        }) = check_finite(&points(f, FeatureSpace::Colour))
        else {
            panic!("non-finite features were accepted");
        };
        assert_eq!((count, total, space), (7, 10, FeatureSpace::Colour));
        assert_eq!(samples, ["'s1'", "'s2'", "'s4'", "'s5'", "'s6'"]);
        assert!(check_finite(&points(Array2::zeros((3, 2)), FeatureSpace::Relevance)).is_ok());
    }

    #[test]
    fn a_group_without_masses_weighs_its_feature_rows() {
        let f = Array2::from_shape_vec((2, 2), vec![1.0, -2.0, 0.5, 0.5]).unwrap();
        let mut p = points(f, FeatureSpace::Image);
        assert_eq!(masses(&p), vec![3.0, 1.0]);
        p.mass = Some(vec![7.0, 8.0]);
        assert_eq!(masses(&p), vec![7.0, 8.0]);
    }

    #[test]
    fn the_seed_depends_on_the_class() {
        assert_eq!(group_seed(5, 0), 5);
        assert_ne!(group_seed(5, 1), group_seed(5, 2));
        assert_eq!(group_seed(0, -1), (-1i64 as u64).wrapping_mul(0x9E37_79B9));
    }

    #[test]
    fn spectral_start_spaces_are_laid_out_by_their_eigenvectors() {
        // two tight groups of points: the layout of a colour group is tsne_init's start
        let f = Array2::from_shape_fn((40, 3), |(i, j)| {
            (if i < 20 { 0.0 } else { 5.0 }) + 0.01 * ((i * 7 + j * 3) % 11) as f32
        });
        let settings = AnalysisSettings::default();
        let colour = analyze_group(&points(f.clone(), FeatureSpace::Colour), &settings).unwrap();
        let init = embed::tsne_init(colour.eigenpairs.vectors.view(), TSNE_INIT_EIGENVECTORS);
        for (s, p) in colour.samples.iter().zip(&init) {
            assert_eq!([s.tsne_x, s.tsne_y], [p[0] as f32, p[1] as f32]);
        }
        assert_eq!(colour.spectrum.space, FeatureSpace::Colour);
        assert_eq!(colour.samples.len(), 40);
    }
}

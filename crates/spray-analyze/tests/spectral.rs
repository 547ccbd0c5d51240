//! SpRAy's numerics against SciPy/scikit-learn fixtures and the thesis' examples.

use std::path::PathBuf;

use ndarray16::Array2;
use spray_analyze::graph::{self, KnnGraph};
use spray_analyze::{
    analyze_group, eigen, AnalysisSettings, EdgeWeight, GroupPoints, LaplacianKind, Symmetrize,
};

struct Fixture {
    points: Array2<f32>,
    k: usize,
    eigenvalues: Vec<f64>,
    components: usize,
}

fn fixture(name: &str) -> Fixture {
    // Read at run time, not with env!: CI reuses a target dir across clones, and a test binary
    // cargo finds fresh would otherwise look for fixtures in the clone that built it.
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures/spectral")
        .join(format!("{name}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let d = rows[0].len();
    Fixture {
        points: Array2::from_shape_vec((rows.len(), d), rows.concat()).unwrap(),
        k: v["k"].as_u64().unwrap() as usize,
        eigenvalues: v["eigenvalues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
        components: v["components"].as_u64().unwrap() as usize,
    }
}

const FIXTURES: [&str; 6] = [
    "gauss4_sigma0.2",
    "gauss4_sigma0.4",
    "gauss4_sigma0.8",
    "blobs3_6d",
    "uniform_10d",
    "small_n7",
];

fn spectrum(f: &Fixture, solver: eigen::EigenSolver) -> Vec<f64> {
    let table = graph::knn(f.points.view(), f.k);
    let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
    let l = g.laplacian(LaplacianKind::Symmetric);
    eigen::smallest(&l, 20, solver, 2000, 1).unwrap().values
}

/// Connected components of the kNN graph, by union–find.
fn components(f: &Fixture) -> usize {
    let table = graph::knn(f.points.view(), f.k);
    let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
    let n = g.affinity.n;
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut Vec<usize>, x: usize) -> usize {
        if p[x] != x {
            let r = find(p, p[x]);
            p[x] = r;
        }
        p[x]
    }
    for i in 0..n {
        for (j, _) in g.affinity.row(i) {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            parent[a] = b;
        }
    }
    (0..n).filter(|&i| find(&mut parent, i) == i).count()
}

#[test]
fn eigenvalues_match_scipy_eigh() {
    for name in FIXTURES {
        let f = fixture(name);
        let ours = spectrum(&f, eigen::EigenSolver::Dense);
        assert_eq!(ours.len(), f.eigenvalues.len(), "{name}");
        let worst = ours
            .iter()
            .zip(&f.eigenvalues)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("{name}: max |λ − λ_scipy| = {worst:.2e}");
        assert!(
            worst <= 1e-6,
            "{name}: {worst:e}\nours {ours:?}\nscipy {:?}",
            f.eigenvalues
        );
    }
}

#[test]
fn zero_eigenvalue_multiplicity_counts_components() {
    for name in FIXTURES {
        let f = fixture(name);
        let values = spectrum(&f, eigen::EigenSolver::Dense);
        let zeros = values.iter().filter(|v| v.abs() < 1e-9).count();
        assert_eq!(components(&f), f.components, "{name}: component count");
        assert_eq!(zeros, f.components, "{name}: {values:?}");
    }
}

fn gap_after(values: &[f64]) -> (usize, f64, f64) {
    // (1-based index of the largest gap among λ1..λ8, that gap, the largest other gap);
    // beyond λ8 the second harmonics of the four 1-D chains set in.
    let gaps: Vec<f64> = values[..8].windows(2).map(|w| w[1] - w[0]).collect();
    let (i, g) = gaps
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |b, (i, &g)| if g > b.1 { (i, g) } else { b });
    let other = gaps
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, &g)| g)
        .fold(0.0, f64::max);
    (i + 1, g, other)
}

#[test]
fn four_gaussians_of_thesis_figure_6_2() {
    for (sigma, clear) in [("0.2", true), ("0.4", true), ("0.8", false)] {
        let f = fixture(&format!("gauss4_sigma{sigma}"));
        let values = spectrum(&f, eigen::EigenSolver::Dense);
        let (at, gap, other) = gap_after(&values);
        eprintln!(
            "σ = {sigma}: λ1..6 = {:?}; largest gap after λ{at}: {gap:.4} (next {other:.4})",
            &values[..6]
        );
        if clear {
            assert!(
                values[..4].iter().all(|&v| v < 0.05),
                "σ = {sigma}: four near-zero eigenvalues"
            );
            assert_eq!(at, 4, "σ = {sigma}: the gap is after λ4");
            assert!(
                gap >= 2.0 * other,
                "σ = {sigma}: the gap after λ4 stands out"
            );
        } else {
            assert!(
                at != 4 || gap < 2.0 * other,
                "σ = 0.8: no clear gap after λ4 ({values:?})"
            );
        }
    }
    let exact = fixture("gauss4_sigma0.2");
    let values = spectrum(&exact, eigen::EigenSolver::Dense);
    assert!(
        values[..4].iter().all(|v| v.abs() < 1e-9),
        "σ = 0.2: four exact zeros"
    );
}

/// Well-separated groups in 400 dimensions (like 20×20 maps), n points.
fn clustered(n: usize, groups: usize, seed: u64) -> Array2<f32> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) as f32
    };
    let centres: Vec<Vec<f32>> = (0..groups)
        .map(|_| (0..400).map(|_| next() * 4.0).collect())
        .collect();
    Array2::from_shape_fn((n, 400), |(i, j)| centres[i % groups][j] + next() - 0.5)
}

#[test]
fn dense_and_sparse_solvers_agree() {
    for (n, groups) in [(1500, 1), (1500, 3)] {
        let pts = clustered(n, groups, n as u64 + groups as u64);
        let table = graph::knn(pts.view(), graph::default_k(n));
        let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
        let l = g.laplacian(LaplacianKind::Symmetric);
        let dense = eigen::dense_smallest(&l, 20);
        let sparse = eigen::sparse_smallest(&l, 20, 7).unwrap();
        let worst = dense
            .values
            .iter()
            .zip(&sparse.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("n = {n}, {groups} group(s): max |λ_dense − λ_lobpcg| = {worst:.2e}");
        assert!(
            worst <= 1e-6,
            "n = {n}: {worst:e}\n{:?}\n{:?}",
            dense.values,
            sparse.values
        );
        let zeros = sparse.values.iter().filter(|v| v.abs() < 1e-6).count();
        assert_eq!(zeros, groups);
    }
}

/// A solver's eigenvalues against SciPy's on the fixtures (small: every component below the
/// dense cut-off goes through the dense path of the per-component solver, the rest through
/// the solver under test), then against the dense solver on large connected and disconnected
/// graphs (ten groups: ten exact zeros): eigenvalues, and the eigenspaces they span
/// (projector overlap, sign- and rotation-free) — the zero eigenspace (component indicators)
/// and the leading one up to the last clear gap.
fn agrees_with_scipy_and_the_dense_solver(
    label: &str,
    solver: eigen::EigenSolver,
    large: impl Fn(&spray_analyze::SparseSymmetric) -> eigen::Eigenpairs,
) {
    for name in FIXTURES {
        let f = fixture(name);
        let ours = spectrum(&f, solver);
        let worst = ours
            .iter()
            .zip(&f.eigenvalues)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "{label}, {name}: {worst:e}");
    }
    for (n, groups) in [(1500, 1), (1500, 3), (2000, 10)] {
        let pts = clustered(n, groups, n as u64 + groups as u64);
        let table = graph::knn(pts.view(), graph::default_k(n));
        let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
        let l = g.laplacian(LaplacianKind::Symmetric);
        let dense = eigen::dense_smallest(&l, 20);
        let ours = large(&l);
        let worst = dense
            .values
            .iter()
            .zip(&ours.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("n = {n}, {groups} group(s): max |λ_dense − λ_{label}| = {worst:.2e}");
        assert!(worst <= 1e-8, "{label}, n = {n}: {worst:e}");
        let zeros = ours.values.iter().filter(|v| v.abs() < 1e-6).count();
        assert_eq!(zeros, groups);
        let gap_cut = (groups..20)
            .rev()
            .find(|&c| dense.values[c] - dense.values[c - 1] > 1e-3)
            .unwrap_or(groups);
        for cut in [groups, gap_cut] {
            let (a, b) = (
                dense.vectors.slice(ndarray16::s![.., ..cut]),
                ours.vectors.slice(ndarray16::s![.., ..cut]),
            );
            let overlap = a.t().dot(&b);
            let captured: f64 = overlap.iter().map(|v| v * v).sum::<f64>() / cut as f64;
            assert!(
                (captured - 1.0).abs() < 1e-8,
                "{label}, n = {n}, first {cut}: {captured}"
            );
        }
    }
}

#[test]
fn lanczos_agrees_with_scipy_and_the_dense_solver() {
    agrees_with_scipy_and_the_dense_solver("lanczos", eigen::EigenSolver::Lanczos, |l| {
        eigen::lanczos_smallest(l, 20, 7)
    });
}

#[test]
fn filtered_subspace_iteration_agrees_with_scipy_and_the_dense_solver() {
    // The default solver for components above the dense cut-off.
    agrees_with_scipy_and_the_dense_solver("filtered", eigen::EigenSolver::Chebyshev, |l| {
        eigen::smallest(l, 20, eigen::EigenSolver::Chebyshev, 0, 7).unwrap()
    });
}

/// Adjusted Rand index of two labelings.
fn ari(a: &[i32], b: &[i32]) -> f64 {
    use std::collections::HashMap;
    let n = a.len() as f64;
    let mut table: HashMap<(i32, i32), f64> = HashMap::new();
    let mut ra: HashMap<i32, f64> = HashMap::new();
    let mut rb: HashMap<i32, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1.0;
        *ra.entry(x).or_default() += 1.0;
        *rb.entry(y).or_default() += 1.0;
    }
    let c2 = |v: f64| v * (v - 1.0) / 2.0;
    let index: f64 = table.values().map(|&v| c2(v)).sum();
    let sa: f64 = ra.values().map(|&v| c2(v)).sum();
    let sb: f64 = rb.values().map(|&v| c2(v)).sum();
    let expected = sa * sb / c2(n);
    let max = (sa + sb) / 2.0;
    (index - expected) / (max - expected)
}

/// Synthetic 20×20 "relevance maps": the object blob at a jittered position; in the planted
/// class a share of the maps also carries relevance on a corner artefact.
fn synthetic_class(n: usize, planted: usize, seed: u64) -> (Array2<f32>, Vec<i32>) {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut rows = Vec::new();
    let mut truth = Vec::new();
    for i in 0..n {
        let (cy, cx) = (10.0 + (next() - 0.5) * 8.0, 10.0 + (next() - 0.5) * 8.0);
        let artefact = i < planted;
        let mut map = vec![0.0f32; 400];
        for y in 0..20 {
            for x in 0..20 {
                let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                let mut v = (-d2 / 8.0).exp() + 0.05 * (next() - 0.5);
                if artefact && y >= 17 && x >= 17 {
                    v += 1.5;
                }
                map[y * 20 + x] = v as f32;
            }
        }
        let total: f32 = map.iter().map(|v| v.abs()).sum();
        rows.extend(map.iter().map(|v| v / total));
        truth.push(artefact as i32);
    }
    (Array2::from_shape_vec((n, 400), rows).unwrap(), truth)
}

#[test]
fn planted_subgroup_is_recovered_and_ranks_first() {
    let settings = AnalysisSettings::default();
    let mut scores = Vec::new();
    let mut planted_ari = 0.0;
    for class in 0..5 {
        let planted = if class == 2 { 60 } else { 0 };
        let (features, truth) = synthetic_class(200, planted, 100 + class as u64);
        let points = GroupPoints {
            class_index: class,
            class_name: format!("class {class}"),
            space: spray_store::FeatureSpace::Relevance,
            ids: (0..200)
                .map(|i| (i as i64, format!("s{i}"), String::new()))
                .collect(),
            features,
            mass: None,
        };
        let result = analyze_group(&points, &settings).unwrap();
        if planted > 0 {
            let labels: Vec<i32> = result.samples.iter().map(|s| s.cluster).collect();
            planted_ari = ari(&labels, &truth);
            eprintln!(
                "planted class: {} clusters, ARI {planted_ari:.3}, spectrum {:?}",
                result.spectrum.clusters,
                &result.spectrum.eigenvalues[..5]
            );
        }
        eprintln!(
            "class {class}: λ1..6 {:?} gap {:.4} at {} near-zero {} est {}",
            &result.spectrum.eigenvalues[..6],
            result.spectrum.largest_gap,
            result.spectrum.largest_gap_index,
            result.spectrum.near_zero,
            result.spectrum.estimated_clusters
        );
        scores.push((result.spectrum.score, class));
    }
    assert!(planted_ari >= 0.95, "ARI {planted_ari}");
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(scores[0].1, 2, "ranking: {scores:?}");
}

#[test]
fn analysis_is_deterministic() {
    let (features, _) = synthetic_class(120, 30, 5);
    let points = GroupPoints {
        class_index: 0,
        class_name: "c".into(),
        space: spray_store::FeatureSpace::Relevance,
        ids: (0..120)
            .map(|i| (i as i64, format!("s{i}"), String::new()))
            .collect(),
        features,
        mass: None,
    };
    let settings = AnalysisSettings::default();
    let a = analyze_group(&points, &settings).unwrap();
    let b = analyze_group(&points, &settings).unwrap();
    assert_eq!(a.spectrum, b.spectrum);
    assert_eq!(a.samples, b.samples);
}

#[test]
fn duplicates_and_tiny_groups() {
    // All points identical: the graph still forms, eigenvalues are finite.
    let same = Array2::from_elem((30, 4), 1.0f32);
    for n in [1usize, 2, 3, 30] {
        let points = GroupPoints {
            class_index: 0,
            class_name: "c".into(),
            space: spray_store::FeatureSpace::Relevance,
            ids: (0..n)
                .map(|i| (i as i64, format!("s{i}"), String::new()))
                .collect(),
            features: same.slice(ndarray16::s![..n, ..]).to_owned(),
            mass: None,
        };
        let r = analyze_group(&points, &AnalysisSettings::default()).unwrap();
        assert_eq!(r.samples.len(), n);
        assert!(
            r.spectrum.eigenvalues.iter().all(|v| v.is_finite()),
            "n = {n}"
        );
        assert!(r
            .samples
            .iter()
            .all(|s| s.tsne_x.is_finite() && s.tsne_y.is_finite()));
    }
}

#[test]
fn dbscan_and_agglomerative_find_the_planted_groups() {
    use spray_analyze::ClusterMethod;
    let (features, truth) = synthetic_class(150, 50, 17);
    let points = GroupPoints {
        class_index: 0,
        class_name: "c".into(),
        space: spray_store::FeatureSpace::Relevance,
        ids: (0..150)
            .map(|i| (i as i64, format!("s{i}"), String::new()))
            .collect(),
        features,
        mass: None,
    };
    for method in [ClusterMethod::Agglomerative, ClusterMethod::Dbscan] {
        let settings = AnalysisSettings {
            cluster_method: method,
            ..AnalysisSettings::default()
        };
        let r = analyze_group(&points, &settings).unwrap();
        let labels: Vec<i32> = r.samples.iter().map(|s| s.cluster).collect();
        let score = ari(&labels, &truth);
        eprintln!("{method:?}: ARI {score:.3}");
        assert!(score >= 0.95, "{method:?}: ARI {score}");
    }
}

#[test]
fn non_finite_features_are_refused_with_the_samples_named() {
    let (mut features, _) = synthetic_class(40, 10, 3);
    features[[7, 2]] = f32::NAN;
    features[[21, 0]] = f32::INFINITY;
    let points = GroupPoints {
        class_index: 3,
        class_name: "horse".into(),
        space: spray_store::FeatureSpace::Relevance,
        ids: (0..40)
            .map(|i| (i as i64, format!("img{i}"), String::new()))
            .collect(),
        features,
        mass: None,
    };
    let err = analyze_group(&points, &AnalysisSettings::default())
        .err()
        .expect("NaN features analysed")
        .to_string();
    assert!(
        err.contains("horse")
            && err.contains("2 of 40")
            && err.contains("'img7'")
            && err.contains("'img21'"),
        "{err}"
    );
}

/// Share of each planted sample's 10 nearest t-SNE neighbours that are planted too.
fn planted_neighbour_share(
    samples: &[spray_store::analysis::SampleEmbedding],
    truth: &[i32],
) -> f64 {
    let planted: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == 1).collect();
    let mut same = 0usize;
    for &i in &planted {
        let mut d: Vec<(f32, usize)> = (0..samples.len())
            .filter(|&j| j != i)
            .map(|j| {
                let (dx, dy) = (
                    samples[i].tsne_x - samples[j].tsne_x,
                    samples[i].tsne_y - samples[j].tsne_y,
                );
                (dx * dx + dy * dy, j)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        same += d[..10].iter().filter(|p| truth[p.1] == 1).count();
    }
    same as f64 / (10 * planted.len()) as f64
}

#[test]
fn barnes_hut_tsne_separates_the_planted_group_like_exact_tsne() {
    let (features, truth) = synthetic_class(600, 120, 11);
    let points = GroupPoints {
        class_index: 0,
        class_name: "c".into(),
        space: spray_store::FeatureSpace::Relevance,
        ids: (0..600)
            .map(|i| (i as i64, format!("s{i}"), String::new()))
            .collect(),
        features,
        mass: None,
    };
    let bh = AnalysisSettings::default(); // n = 600 > exact_limit: Barnes–Hut
    let mut exact = AnalysisSettings::default();
    exact.tsne.exact_limit = 10_000;
    let share_bh = planted_neighbour_share(&analyze_group(&points, &bh).unwrap().samples, &truth);
    let share_exact =
        planted_neighbour_share(&analyze_group(&points, &exact).unwrap().samples, &truth);
    eprintln!("planted neighbours in t-SNE: Barnes–Hut {share_bh:.3}, exact {share_exact:.3}");
    // 20% of the class is planted: a random layout gives 0.2.
    assert!(
        share_bh >= 0.9 && share_exact >= 0.9,
        "{share_bh} {share_exact}"
    );
}

#[test]
fn the_approximate_neighbour_search_finds_the_planted_group_as_the_exact_one_does() {
    let (features, truth) = synthetic_class(600, 120, 29);
    let points = GroupPoints {
        class_index: 0,
        class_name: "c".into(),
        space: spray_store::FeatureSpace::Relevance,
        ids: (0..600)
            .map(|i| (i as i64, format!("s{i}"), String::new()))
            .collect(),
        features,
        mass: None,
    };
    let labels = |knn: spray_analyze::KnnSearch| -> Vec<i32> {
        let settings = AnalysisSettings {
            knn,
            clusters: Some(2),
            ..AnalysisSettings::default()
        };
        let r = analyze_group(&points, &settings).unwrap();
        r.samples.iter().map(|s| s.cluster).collect()
    };
    let exact = labels(spray_analyze::KnnSearch::Exact);
    let approximate = labels(spray_analyze::KnnSearch::Approximate);
    let (a, e) = (ari(&approximate, &truth), ari(&exact, &truth));
    eprintln!("ARI against the planted group: exact {e:.3}, approximate {a:.3}");
    assert!(e >= 0.95 && a >= 0.95, "exact {e}, approximate {a}");
}

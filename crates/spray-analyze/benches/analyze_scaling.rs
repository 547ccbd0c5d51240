//! Time and peak memory of SpRAy on one class of n points of dimension d.
//!
//!     cargo bench -p spray-analyze --bench analyze_scaling -- --n 10000 [--dim 400] [--tsne-threads N]
//!         [--epochs N] [--exaggeration-epochs N] [--learning-rate X] [--theta X]
//!         [--solver auto|dense|lanczos|chebyshev|lobpcg] [--dense-limit N] [--exact-limit N]
//!
//! Run one size per process: peak memory (VmHWM) is per process. The same computation with
//! SciPy/scikit-learn: benches/spray_reference.py on the same data (`--write-data PATH` writes
//! it), with the same parameters.

use std::time::Instant;

use ndarray16::Array2;
use spray_analyze::graph::{self, KnnGraph};
use spray_analyze::{eigen, embed, AnalysisSettings, EdgeWeight, LaplacianKind, Symmetrize};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

mod common;
use common::peak_rss_mib;

/// Ten Gaussian groups of unequal size in `dim` dimensions (LCG; mirrored in the Python script).
fn data(n: usize, dim: usize) -> Array2<f32> {
    let mut s: u64 = 12345;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let centres: Vec<f32> = (0..10 * dim).map(|_| next() * 2.0).collect();
    let mut out = Array2::zeros((n, dim));
    for i in 0..n {
        let g = (i * i) % 10;
        for j in 0..dim {
            out[[i, j]] = centres[g * dim + j] + (next() - 0.5);
        }
    }
    out
}

fn main() {
    let n = arg("--n", 1300);
    let dim = arg("--dim", 400);
    let mut settings = AnalysisSettings::default();
    settings.tsne.threads = arg("--tsne-threads", 0);
    settings.tsne.exaggeration_epochs =
        arg("--exaggeration-epochs", settings.tsne.exaggeration_epochs);
    if let Some(lr) = std::env::args()
        .position(|a| a == "--learning-rate")
        .and_then(|i| std::env::args().nth(i + 1))
    {
        settings.tsne.learning_rate = Some(lr.parse().expect("--learning-rate X"));
    }
    if let Some(theta) = std::env::args()
        .position(|a| a == "--theta")
        .and_then(|i| std::env::args().nth(i + 1))
    {
        settings.tsne.theta = theta.parse().expect("--theta X");
    }
    settings.tsne.exact_limit = arg("--exact-limit", settings.tsne.exact_limit);
    settings.tsne.epochs = arg("--epochs", settings.tsne.epochs);
    settings.dense_limit = arg("--dense-limit", settings.dense_limit);
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = args
        .iter()
        .position(|a| a == "--solver")
        .and_then(|i| args.get(i + 1))
    {
        settings.solver = serde_json::from_str(&format!("\"{name}\""))
            .expect("--solver auto|dense|lanczos|chebyshev|lobpcg");
    }
    let points = data(n, dim);
    if let Some(i) = std::env::args().position(|a| a == "--write-data") {
        // Raw little-endian f32, row-major: benches/spray_reference.py --data reads it.
        let path = std::env::args().nth(i + 1).expect("--write-data PATH");
        let bytes: Vec<u8> = points.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).expect("write data");
        println!("wrote {n}x{dim} float32 to {path}");
        return;
    }
    if std::env::args().any(|a| a == "--knn-only") {
        // The neighbour search alone: exact blocked GEMM against NN-descent, and NN-descent's
        // recall@k against brute force on 2,000 sampled rows.
        let k = 21;
        let t = Instant::now();
        let approx = spray_analyze::ann::knn(
            points.view(),
            k,
            &spray_analyze::ann::NnDescentSettings::default(),
        );
        let t_ann = t.elapsed().as_secs_f64();
        let m_ann = peak_rss_mib();
        let queries: Vec<usize> = (0..2000).map(|i| (i * 7919) % n).collect();
        let recall = spray_analyze::ann::recall_at_k(points.view(), &approx, &queries);
        let exact_time = if std::env::args().any(|a| a == "--no-exact") {
            f64::NAN
        } else {
            let t = Instant::now();
            let _ = graph::knn(points.view(), k);
            t.elapsed().as_secs_f64()
        };
        println!(
            "kNN n={n} d={dim} k={k}: NN-descent {t_ann:.2}s (peak RSS {m_ann:.0} MiB), recall@{k} vs exact on {} sampled rows = {recall:.4}; exact blocked GEMM {exact_time:.2}s",
            queries.len()
        );
        return;
    }
    let total = Instant::now();

    let t = Instant::now();
    let k = graph::default_k(n);
    // One search for the graph's k and t-SNE's 3·perplexity neighbours (as the stage does).
    let tsne_k =
        (n > settings.tsne.exact_limit).then(|| (3.0 * settings.tsne.perplexity).ceil() as usize);
    let searched = graph::knn(points.view(), k.max(tsne_k.unwrap_or(0)));
    let t_search = t.elapsed().as_secs_f64();
    let table = searched.truncated(k);
    let g = KnnGraph::build(&table, EdgeWeight::Binary, Symmetrize::Max);
    let l = g.laplacian(LaplacianKind::Symmetric);
    let t_knn = t.elapsed().as_secs_f64();
    eprintln!(
        "kNN search {t_search:.2}s, graph and Laplacian {:.2}s",
        t_knn - t_search
    );
    let m_knn = peak_rss_mib();

    let t = Instant::now();
    let pairs = eigen::smallest(&l, 20, settings.solver, settings.dense_limit, 1).expect("eigs");
    let t_eig = t.elapsed().as_secs_f64();
    let m_eig = peak_rss_mib();

    let t = Instant::now();
    let emb = embed::spectral_embedding(pairs.vectors.view(), 10);
    let labels = embed::cluster(
        &emb,
        10,
        settings.cluster_method,
        settings.kmeans_restarts,
        1,
        0.1,
    )
    .expect("kmeans");
    let t_km = t.elapsed().as_secs_f64();

    // The default ranking criterion (contrast): masses, separation and shift per cluster.
    let t = Instant::now();
    let mass: Vec<f64> = points
        .rows()
        .into_iter()
        .map(spray_analyze::contrast::relevance_mass)
        .collect();
    let strongest = spray_analyze::contrast::strongest(&g, &labels, &mass);
    // The second grouping: the best two-way split.
    let split =
        embed::two_way_split(pairs.vectors.view(), settings.kmeans_restarts, 1).expect("split");
    let t_contrast = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let init = embed::tsne_init(pairs.vectors.view(), spray_analyze::TSNE_INIT_EIGENVECTORS);
    let wide = tsne_k.map(|t| searched.truncated(t));
    let coords = if std::env::args().any(|a| a == "--init-only") {
        init.iter().map(|p| [p[0] as f32, p[1] as f32]).collect()
    } else {
        embed::tsne(points.view(), &g, wide.as_ref(), &init, &settings.tsne)
    };
    let t_tsne = t.elapsed().as_secs_f64();
    // The exact t-SNE cost of the result (not timed; O(n²)).
    let kl = if n <= 20_000 {
        embed::tsne_input(points.view(), &g, wide.as_ref(), &settings.tsne)
            .map(|p| {
                let y: Vec<[f64; 2]> = coords.iter().map(|c| [c[0] as f64, c[1] as f64]).collect();
                spray_analyze::tsne::kl_divergence(&p, &y)
            })
            .unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    eprintln!(
        "peak RSS after kNN {m_knn:.0} MiB, after eigs {m_eig:.0} MiB, after t-SNE {:.0} MiB",
        peak_rss_mib()
    );

    let seconds = total.elapsed().as_secs_f64();
    // Neighbourhood preservation: the share of each point's input-space kNN (the graph's k)
    // that are among its k nearest in the 2-D embedding (brute force; not timed).
    let (recall, purity) = if n <= 20_000 {
        let mut hit = 0usize;
        let mut same = 0usize;
        for i in 0..n {
            let mut d: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (dx, dy) = (coords[i][0] - coords[j][0], coords[i][1] - coords[j][1]);
                    (dx * dx + dy * dy, j)
                })
                .collect();
            d.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            let near: std::collections::HashSet<usize> = d[..k].iter().map(|p| p.1).collect();
            hit += table.neighbors[i]
                .iter()
                .filter(|(j, _)| near.contains(j))
                .count();
            // The data's groups are i² mod 10 (see `data`).
            same += near
                .iter()
                .filter(|&&j| (j * j) % 10 == (i * i) % 10)
                .count();
        }
        (hit as f64 / (n * k) as f64, same as f64 / (n * k) as f64)
    } else {
        (f64::NAN, f64::NAN)
    };
    println!(
        "t-SNE ({}): KL(P||Q) = {kl:.4}; kNN recall of the embedding against the input kNN = {recall:.3}; \
         share of embedding neighbours in the point's own group = {purity:.3}",
        if n <= settings.tsne.exact_limit {
            "exact"
        } else {
            "Barnes-Hut"
        }
    );

    let clusters = labels.iter().copied().max().unwrap_or(0) + 1;
    println!(
        "spray  n={n} d={dim} k={k}: knn+graph {t_knn:.2}s, eigs ({}) {t_eig:.2}s, k-means {t_km:.2}s, contrast + split {t_contrast:.4}s (score {:.2}, split {}/{}), t-SNE {t_tsne:.2}s, total {:.2}s; peak RSS {:.0} MiB; λ2..4 = {:.4?}; {clusters} clusters; {} points embedded",
        match settings.solver {
            eigen::EigenSolver::Auto if n > settings.dense_limit => "Chebyshev-filtered",
            eigen::EigenSolver::Auto | eigen::EigenSolver::Dense => "dense",
            eigen::EigenSolver::Lanczos => "Lanczos",
            eigen::EigenSolver::Chebyshev => "Chebyshev-filtered",
            eigen::EigenSolver::Sparse => "LOBPCG",
        },
        strongest.score(),
        split.iter().filter(|&&l| l == 0).count(),
        split.len(),
        seconds,
        peak_rss_mib(),
        &pairs.values[1..4],
        coords.len()
    );
}

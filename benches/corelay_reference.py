"""CoRelAy 1.0 (the Python SpRAy pipeline spray replaces) on the analyze bench's data.

    cargo bench -p spray-analyze --bench analyze_scaling -- --n N --write-data /tmp/xN.f32
    python benches/corelay_reference.py --n N --data /tmp/xN.f32

Same parameters as spray's defaults: kNN with k = ceil(ln n) (symmetric), the symmetric
normalised Laplacian, 20 eigenpairs, k-means with 10 clusters, and t-SNE (perplexity 7, early
exaggeration 6) through CoRelAy's own processors (scikit-learn underneath). Prints time per step
and peak RSS. benches/side_by_side.sh runs both tools in one go and prints the ratio.
Requirements: benches/requirements-corelay.txt.
"""
import argparse
import math
import resource
import time

import numpy as np
from corelay.pipeline.spectral import SpectralClustering
from corelay.processor.affinity import SparseKNN
from corelay.processor.clustering import KMeans
from corelay.processor.distance import SciPyPDist
from corelay.processor.embedding import EigenDecomposition, TSNEEmbedding
from corelay.processor.laplacian import SymmetricNormalLaplacian


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dim", type=int, default=400)
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    x = np.fromfile(a.data, dtype=np.float32).reshape(a.n, a.dim)
    k = max(1, math.ceil(math.log(a.n)))
    steps = {}
    total = time.perf_counter()

    t = time.perf_counter()
    distances = SciPyPDist(metric="euclidean")(x)
    affinity = SparseKNN(n_neighbors=k, symmetric=True)(distances)
    laplacian = SymmetricNormalLaplacian()(affinity)
    steps["kNN+graph"] = time.perf_counter() - t

    t = time.perf_counter()
    eigenvalues, eigenvectors = EigenDecomposition(n_eigval=20)(laplacian)
    steps["eigs"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = KMeans(n_clusters=10)(eigenvectors)
    steps["k-means"] = time.perf_counter() - t

    t = time.perf_counter()
    coords = TSNEEmbedding(perplexity=7.0, early_exaggeration=6.0)(x)
    steps["t-SNE"] = time.perf_counter() - t
    seconds = time.perf_counter() - total

    # The pipeline object end to end as well (what a CoRelAy user runs), without t-SNE.
    t = time.perf_counter()
    SpectralClustering(
        pairwise_distance=SciPyPDist(metric="euclidean"),
        affinity=SparseKNN(n_neighbors=k, symmetric=True),
        laplacian=SymmetricNormalLaplacian(),
        embedding=EigenDecomposition(n_eigval=20),
        clustering=KMeans(n_clusters=10),
    )(x)
    pipeline_seconds = time.perf_counter() - t

    shown = ", ".join(f"{name} {s:.2f}s" for name, s in steps.items())
    print(
        f"corelay n={a.n} d={a.dim} k={k}: {shown}, total {seconds:.2f}s; "
        f"peak RSS {peak_mib():.0f} MiB; SpectralClustering pipeline alone {pipeline_seconds:.2f}s; "
        f"{len(set(np.asarray(labels).ravel().tolist()))} clusters; {coords.shape[0]} points embedded"
    )


if __name__ == "__main__":
    main()

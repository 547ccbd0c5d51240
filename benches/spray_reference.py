"""The analyze stage's computation with SciPy and scikit-learn, for comparison with
`cargo bench -p spray-analyze --bench analyze_scaling -- --n N`.

    cargo bench -p spray-analyze --bench analyze_scaling -- --n 10000 --write-data /tmp/x10k.f32
    python benches/spray_reference.py --n 10000 --data /tmp/x10k.f32

Same data, same parameters: exact kNN with k = ceil(ln n), binary, max-
symmetrised; L_sym; 20 smallest eigenpairs (dense eigh up to n = 2000, else ARPACK eigsh on
I + D^-1/2 W D^-1/2, largest algebraic, which are L_sym's smallest); k-means with 10 restarts on
10 row-normalised eigenvectors; 2-D t-SNE (perplexity 7, early exaggeration 6; exact up to
n = 2000, Barnes-Hut above). Prints time per step and peak RSS.
"""
import argparse
import math
import resource
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import laplacian
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.neighbors import kneighbors_graph


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1300)
    ap.add_argument("--dim", type=int, default=400)
    ap.add_argument("--data", required=True,
                    help="raw float32 file from analyze_scaling --write-data")
    a = ap.parse_args()
    n = a.n
    x = np.fromfile(a.data, dtype="<f4").reshape(n, a.dim)
    total = time.perf_counter()
    t = time.perf_counter()
    k = max(1, math.ceil(math.log(n)))
    knn = kneighbors_graph(x, k, mode="connectivity", include_self=False, n_jobs=-1)
    w = knn.maximum(knn.T).astype(np.float64)
    lap = laplacian(w, normed=True)
    t_knn = time.perf_counter() - t
    t = time.perf_counter()
    if n <= 2000:
        values, vectors = scipy.linalg.eigh(lap.toarray(), subset_by_index=[0, 19])
        solver = "dense"
    else:
        m = sp.identity(n) * 2 - lap
        values, vectors = eigsh(m, k=20, which="LA")
        values, vectors = 2 - values[::-1], vectors[:, ::-1]
        solver = "ARPACK"
    t_eig = time.perf_counter() - t
    t = time.perf_counter()
    u = vectors[:, :10]
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    labels = KMeans(10, n_init=10, random_state=0).fit_predict(u)
    t_km = time.perf_counter() - t
    t = time.perf_counter()
    tsne = TSNE(2, perplexity=7, early_exaggeration=6,
                method="exact" if n <= 2000 else "barnes_hut", init="random", random_state=0)
    tsne.fit_transform(x)
    t_tsne = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scipy  n={n} d={a.dim} k={k}: knn+graph {t_knn:.2f}s, eigs ({solver}) {t_eig:.2f}s, "
          f"k-means {t_km:.2f}s, t-SNE {t_tsne:.2f}s, total {time.perf_counter() - total:.2f}s; "
          f"peak RSS {peak:.0f} MiB; lambda2..4 = {np.round(values[1:4], 4)}; {labels.max() + 1} clusters")


if __name__ == "__main__":
    main()

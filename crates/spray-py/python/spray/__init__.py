"""spray from Python: LRP relevance of ONNX image classifiers and spectral relevance analysis.

    import numpy as np, spray
    relevance = spray.explain("model.onnx", images)              # (N, C, H, W) float32
    relevance, logits = spray.explain("model.onnx", images, target=3, return_logits=True)
    spray.compile("model.onnx", "model-lrp.onnx", composite="epsilon-alpha2-beta1-flat")
    summary = spray.run("pipeline.toml")                         # as `spray run`
    classes = spray.read_table(summary["output_dir"], "classes")  # polars (or pandas) frame
    groups = spray.analyze(maps, labels, grid=16)                # maps computed anywhere

Every operation is the one the `spray` command runs, on the same engine: the same input gives
the same numbers, and a failure raises `spray.SprayError` with the message the command prints.
ONNX Runtime is found as the command finds it (ORT_DYLIB_PATH, SPRAY_ORT_DIR, a `.ort/` folder
made by the repository's scripts/fetch-onnxruntime.sh) or, failing those, in an installed
`onnxruntime` wheel of the version spray is built against.
"""

import glob
import json
import os

import numpy as np


def _find_onnxruntime():
    """Point spray at an installed onnxruntime wheel's library when nothing else is set."""
    if os.environ.get("ORT_DYLIB_PATH") or os.environ.get("SPRAY_ORT_DIR"):
        return
    try:
        import importlib.util

        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    from ._spray import ORT_VERSION

    for root in spec.submodule_search_locations:
        lib = os.path.join(root, "capi", f"libonnxruntime.so.{ORT_VERSION}")
        if os.path.exists(lib):
            os.environ["ORT_DYLIB_PATH"] = lib
            return


_find_onnxruntime()

from ._spray import ORT_VERSION, SprayError  # noqa: E402
from . import _spray  # noqa: E402

__all__ = ["explain", "compile", "run", "analyze", "read_table", "SprayError", "ORT_VERSION"]


def _floats(values):
    """z-box bounds (one value or one per channel) as a list of floats, or None."""
    return None if values is None else [float(a) for a in np.atleast_1d(values)]


def _targets(target, n):
    if target is None or (isinstance(target, str) and target in ("argmax", "predicted")):
        return [-1] * n
    if isinstance(target, (int, np.integer)):
        if target < 0:
            raise ValueError("target must be a non-negative class index, None (predicted) or one per sample")
        return [int(target)] * n
    targets = np.asarray(target, dtype=np.int64).reshape(-1)
    if targets.shape[0] != n:
        raise ValueError(f"{targets.shape[0]} targets for {n} samples")
    return [int(t) for t in targets]


def explain(model, images, composite="epsilon-plus-flat", target=None, *, batch_size=16,
            device="cpu", threads=0, zbox_low=None, zbox_high=None, input_name=None,
            return_logits=False, cache=None):
    """LRP relevance of `images` ((N, C, H, W), preprocessed for the model) under `composite`
    (a built-in name or a composite .toml file) for `target`: None explains the predicted class,
    an int one class for all, a sequence one class per image. Returns float32 relevance shaped
    like the input, and the logits (N, K) with `return_logits=True`. `cache`, a folder: as
    `spray explain --cache`, ONNX Runtime's optimised graph is kept there and later calls with
    the same model and rules load it instead of compiling again (same relevance, bit for bit)."""
    x = np.ascontiguousarray(images, dtype="<f4")
    if x.ndim < 2:
        raise ValueError(f"images have shape {x.shape}; expected (N, C, H, W)")
    relevance, logits, logits_shape = _spray.explain(
        os.fspath(model), x.tobytes(), list(x.shape), _targets(target, x.shape[0]), str(composite),
        zbox_low=_floats(zbox_low), zbox_high=_floats(zbox_high), input_name=input_name,
        batch_size=int(batch_size), device=str(device), threads=int(threads),
        cache=None if cache is None else os.fspath(cache))
    relevance = np.frombuffer(relevance, dtype="<f4").reshape(x.shape).astype(np.float32)
    if not return_logits:
        return relevance
    return relevance, np.frombuffer(logits, dtype="<f4").reshape(logits_shape).astype(np.float32)


def compile(model, out, composite="epsilon-plus-flat", *, zbox_low=None, zbox_high=None,
            input_name=None):
    """Write the LRP model of `model` to `out` (ONNX; inputs: the image and an int64 target per
    sample, negative = predicted; outputs: logits and relevance). Returns its names."""
    names = _spray.compile(os.fspath(model), os.fspath(out), str(composite),
                           zbox_low=_floats(zbox_low), zbox_high=_floats(zbox_high),
                           input_name=input_name)
    return dict(zip(("input", "target", "logits", "relevance"), names))


def run(pipeline, *, stage=None, force=(), device=None):
    """Run a pipeline file as `spray run` does (cached, resumable). Returns a dict: the output
    folder, the report's index, each stage's status, the ranking and the flagged classes."""
    return json.loads(_spray.run(os.fspath(pipeline), stage=stage, force=[str(s) for s in force],
                                 device=device))


def analyze(maps, labels, names=None, **settings):
    """SpRAy on relevance maps held in memory, per label, as the analyze stage analyses the
    relevance space. `maps` is (N, H, W) or (N, C, H, W) (channels are summed), `labels` one int
    per map, `names` an optional {label: name}; `settings` are `[analysis]` keys (grid,
    knn_k, clusters, …; see pipelines/README.md). Returns a list, one dict per label: its
    spectrum ("eigenvalues", "lambda2", "clusters", "score", "contrast", "cut_off", …) and
    "samples", one per map with its "index" in `maps`, "cluster", "tsne_x", "tsne_y" and
    "spectral"."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 4:
        m = m.sum(axis=1)
    if m.ndim != 3:
        raise ValueError(f"maps have shape {np.asarray(maps).shape}; expected (N, H, W) or (N, C, H, W)")
    m = np.ascontiguousarray(m, dtype="<f4")
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    names = {int(k): str(v) for k, v in (names or {}).items()}
    return json.loads(_spray.analyze(m.tobytes(), tuple(m.shape), labels, names, json.dumps(settings)))


_CSV_TABLES = {
    "classes": "report/classes.csv",
    "samples": "report/samples.csv",
    "clusters": "report/clusters.csv",
    "evidence": "verify/evidence.csv",
}
_PARQUET_TABLES = {
    "spectra": "analysis/spectrum-*.parquet",
    "embeddings": "analysis/samples-*.parquet",
    "relevance": "relevance/part-*.parquet",
    "skipped": "relevance/errors-*.parquet",
}
TABLES = tuple(_CSV_TABLES) + tuple(_PARQUET_TABLES)


def read_table(output_dir, name, frame=None):
    """A stage table of a finished run in `output_dir` as a frame: "classes", "samples",
    "clusters" (the report's CSV files), "evidence" (the verify stage's), "spectra",
    "embeddings" (the analysis' Parquet), "relevance", "skipped" (stage 1's Parquet).
    `frame` is "polars" or "pandas"; by default polars where it is installed."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; one of {', '.join(TABLES)}")
    if frame is None:
        try:
            import polars  # noqa: F401

            frame = "polars"
        except ImportError:
            frame = "pandas"
    if frame not in ("polars", "pandas"):
        raise ValueError(f"frame must be 'polars' or 'pandas', not {frame!r}")
    if name in _CSV_TABLES:
        path = os.path.join(os.fspath(output_dir), _CSV_TABLES[name])
        if not os.path.exists(path):
            raise SprayError(f"{path} does not exist: has the stage that writes it run?")
        if frame == "polars":
            import polars as pl

            return pl.read_csv(path, infer_schema_length=None)
        import pandas as pd

        return pd.read_csv(path)
    # Part files only: the stage writes under temporary names starting with a dot.
    paths = sorted(glob.glob(os.path.join(os.fspath(output_dir), _PARQUET_TABLES[name])))
    if not paths:
        raise SprayError(f"no {name} table in {output_dir}: has the stage that writes it run?")
    if frame == "polars":
        import polars as pl

        try:
            return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")
        except pl.exceptions.ComputeError as e:
            # Measured: polars 1.36 and older refuse arrow-rs 60's Parquet ("Invalid thrift");
            # 1.44 and 2.x read it.
            raise SprayError(
                f"polars {pl.__version__} cannot read {name} ({e.__class__.__name__}: "
                f"{str(e).splitlines()[0]}); polars >= 1.44 or frame='pandas' (pyarrow) can") from e
    import pandas as pd

    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)

"""The `spray` Python package, installed from its wheel into a fresh venv (scripts/test-python.sh).

    SPRAY_REPO=. SPRAY_BIN=target/debug/spray python tests/python/test_package.py

Checks what a notebook user relies on: `explain` gives the `spray explain` command's numbers bit
for bit (also through a `cache` folder), errors arrive as `spray.SprayError` with the command's message, `compile` writes an
LRP model, `analyze` runs SpRAy on arrays, `run` runs a pipeline and the readers give its
tables as frames (with the reviewer's columns in classes.csv), and the real ViRelAy serves
the run's `spray export virelay` project over HTTP.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import spray

REPO = os.path.abspath(os.environ["SPRAY_REPO"])
BIN = os.path.abspath(os.environ["SPRAY_BIN"])
MODEL = os.path.join(REPO, "tests/demo/model.onnx")
WORK = tempfile.mkdtemp(prefix="spray-python-")


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True)


def test_explain_matches_the_command_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.random((7, 3, 32, 32), dtype=np.float32)
    np.save(os.path.join(WORK, "x.npy"), x)
    targets = np.array([0, 1, 2, 3, 0, 1, 2], dtype=np.int64)
    np.save(os.path.join(WORK, "t.npy"), targets)
    for composite, target, cli_target in [
        ("epsilon-plus-flat", None, "argmax"),
        ("epsilon-alpha2-beta1-flat", 2, "2"),
        ("epsilon", targets, os.path.join(WORK, "t.npy")),
    ]:
        out = cli("explain", "--model", MODEL, "--input", os.path.join(WORK, "x.npy"),
                  "--composite", composite, "--target", cli_target, "--threads", "1",
                  "--batch-size", "4", "--out-relevance", os.path.join(WORK, "r.npy"),
                  "--out-logits", os.path.join(WORK, "l.npy"))
        assert out.returncode == 0, out.stderr
        r_cli = np.load(os.path.join(WORK, "r.npy"))
        l_cli = np.load(os.path.join(WORK, "l.npy"))
        r, logits = spray.explain(MODEL, x, composite, target, threads=1, batch_size=4,
                                  return_logits=True)
        assert r.dtype == np.float32 and r.shape == x.shape
        assert np.array_equal(r, r_cli), f"{composite}: relevance differs from the command's"
        assert np.array_equal(logits, l_cli), f"{composite}: logits differ from the command's"
        assert np.abs(r).sum() > 0
        # With a cache folder: kept by the first call, loaded by the second, the same numbers.
        cache = os.path.join(WORK, "cache")
        for _ in range(2):
            cached = spray.explain(MODEL, x, composite, target, threads=1, batch_size=4,
                                   cache=cache)
            assert np.array_equal(cached, r), f"{composite}: cached relevance differs"
    assert len(os.listdir(os.path.join(WORK, "cache"))) == 3, "one entry per composite"


def test_errors_carry_the_commands_message():
    missing = os.path.join(WORK, "missing.onnx")
    out = cli("explain", "--model", missing, "--input", os.path.join(WORK, "x.npy"),
              "--out-relevance", os.path.join(WORK, "r.npy"))
    assert out.returncode != 0
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("error: "), message
    try:
        spray.explain(missing, np.zeros((1, 3, 32, 32), np.float32))
    except spray.SprayError as e:
        assert str(e) == message[len("error: "):], (str(e), message)
    else:
        raise AssertionError("no SprayError for a missing model")
    try:
        spray.explain(MODEL, np.zeros((1, 3, 32, 32), np.float32), composite="no-such-rule")
    except spray.SprayError as e:
        assert "no-such-rule" in str(e), str(e)
    else:
        raise AssertionError("no SprayError for an unknown composite")


def test_compile_writes_the_lrp_model():
    out = os.path.join(WORK, "lrp.onnx")
    names = spray.compile(MODEL, out)
    assert os.path.getsize(out) > 0
    assert set(names) == {"input", "target", "logits", "relevance"}


def test_analyze_on_arrays_finds_two_places_in_one_class():
    rng = np.random.default_rng(1)
    maps, labels = [], []
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(80):
        label = i % 2
        cy, cx = ((6, 6) if i % 4 == 0 else (25, 25)) if label == 0 else (16, 16)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0) + 0.01 * rng.random((32, 32))
        maps.append(np.stack([m / 3] * 3))  # (C, H, W): channels are summed
        labels.append(label)
    groups = spray.analyze(np.array(maps), labels, names={0: "two places"}, grid=8)
    assert [g["name"] for g in groups] == ["two places", "1"]
    split = groups[0]
    assert len(split["samples"]) == 40 and len(split["eigenvalues"]) > 2
    by_place = {}
    for s in split["samples"]:
        by_place.setdefault(s["index"] % 4 == 0, set()).add(s["cluster"])
    assert all(len(c) == 1 for c in by_place.values()), by_place
    assert by_place[True] != by_place[False], by_place


def test_run_and_read_the_tables():
    data = os.path.join(REPO, "tests/demo/data")
    pipeline = os.path.join(WORK, "pipeline.toml")
    with open(pipeline, "w") as f:
        f.write(f"""
[dataset]
kind = "folder"
root = "{data}"

[model]
config = "{REPO}/configs/models/demo-shapes.toml"

[lrp]
composite = "epsilon-plus-flat"
target = "label"

[relevance]
grids = [8]
batch_size = 32

[analysis]
grid = 8

[output]
dir = "out"
""")
    summary = spray.run(pipeline)
    assert [s["stage"] for s in summary["stages"]] == ["relevance", "analyze", "verify", "report"]
    assert summary["ranking"][0]["class"] == "triangle", summary["ranking"]
    assert "triangle" in summary["flagged"]
    out = summary["output_dir"]
    assert os.path.isfile(summary["report"])
    frames = {}
    for frame in ("polars", "pandas"):
        classes = spray.read_table(out, "classes", frame=frame)
        rows = classes.to_dicts() if frame == "polars" else classes.to_dict("records")
        by_class = {r["class"]: r for r in rows}
        assert set(by_class) == {"disc", "square", "triangle", "cross"}
        flagged = by_class["triangle"]["flagged"]
        assert flagged in (True, "true"), by_class["triangle"]
        assert by_class["triangle"]["verified_effect"] > 0.3
        frames[frame] = len(rows)
    for name in ("samples", "clusters", "evidence", "spectra", "embeddings", "relevance", "skipped"):
        table = spray.read_table(out, name)
        assert len(table) > 0, name
    assert len(spray.read_table(out, "relevance")) >= 400
    # A second run is cached, as `spray run`'s is.
    again = spray.run(pipeline)
    assert all(s["status"] == "cached" for s in again["stages"]), again["stages"]
    RUN["pipeline"], RUN["out"] = pipeline, out


RUN = {}


def test_virelay_serves_the_exported_project():
    """`spray export virelay` of the run above, loaded by the real ViRelAy and asked over HTTP
    on loopback for a class's clusters and embeddings."""
    import json
    import socket
    import time
    import urllib.request

    out = cli("export", "virelay", RUN["pipeline"])
    assert out.returncode == 0, out.stderr
    project = os.path.join(RUN["out"], "virelay", "project.yaml")
    assert os.path.isfile(project), out.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    virelay = os.path.join(os.path.dirname(sys.executable), "virelay")
    server = subprocess.Popen([virelay, project, "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/api/projects"

    def get(url):
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()

    try:
        for _ in range(120):
            try:
                get(base)
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(f"virelay exited: {server.stdout.read()}")
                time.sleep(0.25)
        projects = json.loads(get(base)[2])
        assert len(projects) == 1, projects
        details = json.loads(get(f"{base}/0")[2])
        method = details["analysisMethods"][0]
        assert {c["name"] for c in method["categories"]} == {"cross", "disc", "square", "triangle"}
        assert {c["humanReadableName"] for c in method["categories"]} == {"cross", "disc", "square", "triangle"}
        assert set(method["clusterings"]) == {"spray", "split"}, method
        assert set(method["embeddings"]) == {"spectral", "tsne"}, method
        url = f"{base}/0/analyses/{method['name']}?category=triangle&clustering=spray&embedding="
        tsne = json.loads(get(url + "tsne")[2])
        spectral = json.loads(get(url + "spectral")[2])
        assert len(tsne["embedding"]) == len(spectral["embedding"]) == 100
        assert len(spectral["eigenvalues"]) >= 2 and spectral["eigenvalues"][0] < 1e-6
        # ViRelAy's clusters are spray's: the same partition of the triangle maps as samples.csv.
        samples = spray.read_table(RUN["out"], "samples", frame="pandas")
        ours = samples[samples["class"] == "triangle"]["cluster"].tolist()
        theirs = [e["cluster"] for e in tsne["embedding"]]
        assert sorted(ours) == sorted(theirs)
        first = tsne["embedding"][0]["attributionIndex"]
        attribution = json.loads(get(f"{base}/0/attributions/{first}")[2])
        assert attribution["labels"][0]["name"] == "triangle", attribution
        status, kind, body = get(f"{base}/0/attributions/{first}/heatmap?colorMap=blue-white-red")
        assert status == 200 and kind.startswith("image/") and len(body) > 100
        status, kind, body = get(f"{base}/0/dataset/{first}/image")
        assert status == 200 and kind.startswith("image/") and len(body) > 100
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_attributions_written_by_h5py_go_through_analyze_and_report():
    """Heatmaps computed elsewhere, in CoRelAy's HDF5 layout, through `spray attributions`:
    a class whose maps hold a second, heavier place is ranked first and split by it."""
    import h5py

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:32, 0:32]
    maps, labels, marked = [], [], []
    for i in range(150):
        label = i % 3
        cy, cx = [(16, 10), (10, 20), (22, 16)][label]
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        mark = label == 0 and i % 2 == 0
        if mark:
            m[26:31, 26:31] += 3.0  # a heavier corner, on half of class "a"
        m = m + 0.02 * rng.standard_normal((32, 32))
        maps.append(np.stack([m * 0.3, m * 0.3, m * 0.4]).astype(np.float32))
        labels.append(label)
        marked.append(mark)
    path = os.path.join(WORK, "attributions.h5")
    with h5py.File(path, "w") as f:
        f["attribution"] = np.array(maps)
        f["label"] = np.array(labels, dtype=np.int64)
        f["prediction"] = rng.standard_normal((150, 3)).astype(np.float32)
    out = os.path.join(WORK, "from-h5")
    run = cli("attributions", path, "--out", out, "--class-names", "a,b,c")
    assert run.returncode == 0, run.stderr
    assert os.path.isfile(os.path.join(out, "report", "index.html")), run.stdout
    classes = spray.read_table(out, "classes", frame="pandas")
    assert sorted(classes["class"]) == ["a", "b", "c"]
    assert classes.sort_values("rank").iloc[0]["class"] == "a", classes[["class", "rank", "score"]]
    samples = spray.read_table(out, "samples", frame="pandas")
    a = samples[samples["class"] == "a"]
    by_mark = {}
    for sample_id, cluster in zip(a["sample_id"], a["cluster"]):
        by_mark.setdefault(marked[int(sample_id)], set()).add(cluster)
    assert by_mark[True].isdisjoint(by_mark[False]), by_mark


if __name__ == "__main__":
    tests = [(name, f) for name, f in sorted(globals().items()) if name.startswith("test_")]
    # In file order: the explain test writes the input the error test reuses.
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    try:
        for name, f in tests:
            f()
            print(f"ok   {name}")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"python package: {len(tests)} tests passed (spray {spray.__file__}, {sys.version.split()[0]})")

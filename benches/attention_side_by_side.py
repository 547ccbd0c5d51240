#!/usr/bin/env python3
"""spray vs LXT 2.1 on full-size vision transformers, side by side in one run.

torchvision's vit_b_16 and timm's deit_tiny_patch16_224 with random weights (the head, the class
token and the LayerNorm affines drawn as in tests/fixtures/make_attention_fixtures.py), exported
with torch.onnx.export's defaults (opset 17, a free batch dimension). For each model:

- agreement: spray's AttnLRP (LRP-0, the composite LXT's Gradient x Input computes) against LXT in
  float64 on the first images, relative to max|R|, next to LXT's own float32 result against
  the same reference (how far float32 alone moves the map on this draw);
- throughput: images/s of `spray explain` (the rate it prints, start-up excluded) and of LXT's
  Gradient x Input in float32, both on 2 threads at the same batch size.

Usage (the pinned environment of tests/fixtures/requirements-lrp-attention.txt):

    PY=/tmp/attnvenv/bin/python
    $PY benches/attention_side_by_side.py --spray $CARGO_TARGET_DIR/debug/spray --images 8
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
import make_attention_fixtures as fx  # noqa: E402

# LRP-0 in effect: ε = 1e-12 changes no denominator a float32 can tell from zero but one that is
# exactly zero (0/0 with ε = 0 made 2 of 8 vit_b_16 maps non-finite).
LRP0 = """name = "lrp0"
conv = {{ rule = "epsilon", epsilon = 1e-12 }}
dense = {{ rule = "epsilon", epsilon = 1e-12 }}
sum = {{ rule = "norm", stabilizer = 1e-12 }}
attention = "{attention}"
"""


def vit_b_16():
    from torchvision.models import vit_b_16 as make

    return make()


def deit_tiny_224():
    import timm

    return timm.create_model("deit_tiny_patch16_224", pretrained=False)


def lxt_float32(make, state, x, targets, batch):
    model = make().eval()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    fx.patch_attnlrp(model, cp=False)
    out = []
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].clone().requires_grad_(True)
        y = model(xb)
        y[torch.arange(len(xb)), targets[i:i + batch]].sum().backward()
        out.append((xb * xb.grad).detach().numpy())
    return np.concatenate(out), len(x) / (time.perf_counter() - start)


def spray_explain(spray, onnx_path, x, targets, batch, workdir):
    np.save(os.path.join(workdir, "x.npy"), x.numpy())
    np.save(os.path.join(workdir, "t.npy"), targets.numpy().astype(np.int64))
    composite = os.path.join(workdir, "lrp0.toml")
    with open(composite, "w") as f:
        f.write(LRP0.format(attention="attn-lrp"))
    out = os.path.join(workdir, "r.npy")
    start = time.perf_counter()
    run = subprocess.run(
        [spray, "explain", "--model", onnx_path, "--input", os.path.join(workdir, "x.npy"),
         "--target", os.path.join(workdir, "t.npy"), "--composite", composite,
         "--out-relevance", out, "--batch-size", str(batch), "--threads", "2"],
        capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    rate = float(re.search(r"\(([\d.]+) images/s\)", run.stdout + run.stderr).group(1))
    return np.load(out), rate, wall - len(x) / rate


def gap(a, reference):
    return float(np.abs(a - reference).max() / np.abs(reference).max())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spray", required=True)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--reference-images", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name, make in [("vit_b_16", vit_b_16), ("deit_tiny_patch16_224", deit_tiny_224)]:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        model = make().eval()
        fx.randomise_(model, generator)
        x = torch.rand(args.images, 3, 224, 224, generator=generator) * 4 - 2
        with torch.no_grad():
            targets = model(x).argmax(1)
        state = {k: v.double() for k, v in model.state_dict().items()}
        n = args.reference_images
        reference = fx.attnlrp_relevance(make, state, x[:n], targets[:n], cp=False)
        with tempfile.TemporaryDirectory() as workdir:
            path = os.path.join(workdir, "model.onnx")
            fx.export(model, x[:1], path)
            r_spray, spray_rate, startup = spray_explain(args.spray, path, x, targets, args.batch, workdir)
        r_lxt, lxt_rate = lxt_float32(make, state, x, targets, args.batch)
        rows.append((name, gap(r_spray[:n], reference), gap(r_lxt[:n], reference),
                     spray_rate, lxt_rate, startup))
        print(rows[-1], file=sys.stderr)
    print(f"torch {torch.__version__}, {args.images} images 224x224 uniform in [-2, 2], batch {args.batch}, "
          f"2 threads; agreement on the first {args.reference_images} against LXT float64")
    print("| model | spray vs LXT f64 | LXT f32 vs LXT f64 | spray img/s | LXT img/s | ratio | spray start-up |")
    print("|---|---|---|---|---|---|---|")
    for name, g_spray, g_lxt, s_rate, l_rate, startup in rows:
        print(f"| {name} | {g_spray:.1e} | {g_lxt:.1e} | {s_rate:.2f} | {l_rate:.2f} | "
              f"{s_rate / l_rate:.1f}x | {startup:.1f} s |")


if __name__ == "__main__":
    main()

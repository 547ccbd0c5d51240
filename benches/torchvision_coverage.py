"""Which torchvision (or timm) classification models spray explains: a coverage table.

    python benches/torchvision_coverage.py --spray target/debug/spray [--max-params 150e6]
    python benches/torchvision_coverage.py --spray target/debug/spray --source timm
    python benches/torchvision_coverage.py --spray target/debug/spray --exporter dynamo   # torch >= 2.9, onnxscript

For every classification model torchvision lists (random weights, seed 0, eval mode): export with
torch.onnx.export's defaults at opset 17 (the TorchScript exporter, constant folding on), then
`spray explain` one input under ε-z⁺-♭ and compare its logits with torch's. A row says
*explained* (relevance finite, logits within 1e-4 of torch's, relative to their largest) or
*refused* with spray's reason (the ops it names), or *failed* (exporter or runtime error).
Needs benches/requirements-lrp.txt. Models above --max-params are listed as not tried.
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
import torchvision


def input_size(name):
    # Transformers fix their input size; Inception needs at least 75 pixels; the rest run at
    # 224 too (some pool to a fixed size and would accept less, but 224 is what users export).
    return 299 if name == "inception_v3" else 224


# timm: the families an audit meets (EfficientNet with and without TF padding, MobileNetV3,
# RegNet, ConvNeXt, ViT, DeiT, Swin), each at its small sizes.
TIMM_MODELS = [
    "efficientnet_b0", "tf_efficientnet_b0", "tf_efficientnet_lite0", "efficientnetv2_rw_t",
    "mobilenetv3_small_100", "mobilenetv3_large_100", "regnetx_002", "regnety_002",
    "convnext_atto", "convnext_tiny", "resnet50", "resnetv2_50", "densenet121",
    "vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224", "swin_tiny_patch4_window7_224",
]


def make_model(source, name):
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    return torchvision.models.get_model(name, weights=None)


def row(name, spray, work, max_params, source="torchvision", exporter="legacy"):
    torch.manual_seed(0)
    model = make_model(source, name).eval()
    with torch.no_grad():
        # torchvision's ViT zero-initialises its head and class token: all logits would be 0
        # and the logits check empty. Give them values.
        for pname, p in model.named_parameters():
            if ("heads" in pname or "class_token" in pname) and not p.any():
                p.normal_(0.0, 0.05)
    params = sum(p.numel() for p in model.parameters())
    if params > max_params:
        return name, params, "not tried", f"{params / 1e6:.0f} M parameters"
    size = input_size(name)
    if source == "timm":
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        if isinstance(logits, tuple):
            logits = logits[0]
    path = os.path.join(work, f"{name}.onnx")
    try:
        torch.onnx.export(model, x, path, opset_version=17 if exporter == "legacy" else 18,
                          dynamo=exporter == "dynamo",
                          input_names=["input"], output_names=["logits"])
    except Exception as e:  # noqa: BLE001 (the exporter's own failure is a row)
        return name, params, "failed", f"export: {str(e).splitlines()[0][:120]}"
    np.save(os.path.join(work, "x.npy"), x.numpy())
    out = subprocess.run(
        [spray, "explain", "--model", path, "--input", os.path.join(work, "x.npy"),
         "--composite", "epsilon-plus-flat", "--out-relevance", os.path.join(work, "r.npy"),
         "--out-logits", os.path.join(work, "l.npy"), "--threads", "2"],
        capture_output=True, text=True,
    )
    try:
        return judge(name, params, out, work, path, x, logits)
    finally:
        os.remove(path)


def judge(name, params, out, work, path, x, logits):
    """The row for one `spray explain` run of the export at `path`."""
    if out.returncode != 0:
        text = out.stderr.strip()
        counts = re.search(r"\(([^()]*×[^()]*)\)", text)
        reason = counts.group(1) if counts else text.splitlines()[-1][:160]
        kind = "refused" if "unsupported" in text or "not supported" in text else "failed"
        return name, params, kind, reason
    r = np.load(os.path.join(work, "r.npy"))
    ours = np.load(os.path.join(work, "l.npy"))
    scale = max(np.abs(logits.numpy()).max(), 1e-12)
    gap = np.abs(ours - logits.numpy()).max() / scale
    if not np.isfinite(r).all():
        return name, params, "failed", "non-finite relevance"
    if gap > 1e-4:
        # Random weights can blow activations up until float32 alone moves the logits: compare
        # with what ONNX Runtime's plain inference of the same export does.
        try:
            import onnxruntime
        except ImportError:
            return name, params, "failed", f"logits differ from torch by {gap:.1e}"
        plain = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        runtime = plain.run(None, {"input": x.numpy()})[0]
        runtime_gap = np.abs(runtime - logits.numpy()).max() / scale
        if runtime_gap > 1e-4 and gap < 10 * runtime_gap:
            return name, params, "explained", (
                f"logits {gap:.1e} from torch; ONNX Runtime's own inference {runtime_gap:.1e} "
                f"(logits up to {scale:.1e} on random weights)")
        return name, params, "failed", f"logits differ from torch by {gap:.1e}"
    return name, params, "explained", f"logits within {gap:.0e} of torch"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spray", required=True)
    p.add_argument("--max-params", type=float, default=150e6)
    p.add_argument("--only", nargs="*")
    p.add_argument("--source", choices=["torchvision", "timm"], default="torchvision")
    p.add_argument("--exporter", choices=["legacy", "dynamo"], default="legacy")
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.source == "timm":
        import timm

        names = args.only or TIMM_MODELS
        library = f"timm {timm.__version__}"
    else:
        names = args.only or torchvision.models.list_models(module=torchvision.models)
        library = f"torchvision {torchvision.__version__}"
    opset = 17 if args.exporter == "legacy" else 18
    print(f"torch {torch.__version__}, {library}, {args.exporter} exporter, opset {opset}")
    print("| model | parameters | result | detail |\n|---|---|---|---|")
    counts = {}
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            started = time.time()
            name, params, kind, detail = row(name, args.spray, work, args.max_params,
                                             args.source, args.exporter)
            counts[kind] = counts.get(kind, 0) + 1
            print(f"| {name} | {params / 1e6:.1f} M | {kind} | {detail} |", flush=True)
            print(f"{name}: {time.time() - started:.0f} s", file=sys.stderr)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()

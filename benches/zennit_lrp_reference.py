"""zennit 0.5.1 on a torchvision model: the peer of `spray explain` in benches/lrp_side_by_side.sh.

    python benches/zennit_lrp_reference.py --model resnet50 --composite epsilon-plus-flat \
        --input in.npy --batch-size 8 --threads 2 [--export model.onnx]

Random weights with a fixed seed (no machine here downloads pretrained ones); `--export` writes
the same model with torch's legacy ONNX exporter (opset 17, constant folding on) and exits.
Prints one line: images/s of the attribution alone, its wall time, and peak RSS.
"""
import argparse
import resource
import time

import numpy as np
import torch
import torchvision
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

COMPOSITES = {
    "epsilon-plus-flat": EpsilonPlusFlat,
    "epsilon-alpha2-beta1-flat": EpsilonAlpha2Beta1Flat,
}


def build(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    # BatchNorm with non-trivial statistics, as a trained model has.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def canonizers(name):
    # zennit's own canonizers for torchvision's models (BatchNorm merged into the convolution,
    # residual additions as modules).
    return [ResNetCanonizer()] if name.startswith("resnet") else [VGGCanonizer()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--composite", default="epsilon-plus-flat", choices=sorted(COMPOSITES))
    p.add_argument("--input")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--export")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.model)
    if args.export:
        x = torch.zeros(1, 3, 224, 224)
        torch.onnx.export(
            model, x, args.export, opset_version=17, dynamo=False,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )
        return
    x = torch.from_numpy(np.load(args.input))
    composite = COMPOSITES[args.composite](canonizers=canonizers(args.model))
    from zennit.attribution import Gradient

    n = x.shape[0]
    started = time.perf_counter()
    with Gradient(model=model, composite=composite) as attributor:
        for i in range(0, n, args.batch_size):
            batch = x[i : i + args.batch_size]
            with torch.no_grad():
                target = model(batch).argmax(1)
            one_hot = torch.eye(1000)[target]
            _, relevance = attributor(batch, one_hot)
            assert torch.isfinite(relevance).all()
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"zennit {args.model} {args.composite}: {n / seconds:.2f} images/s ({seconds:.1f} s), peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()

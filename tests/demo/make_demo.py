"""Generate spray's demo: a small procedural image dataset in which one class carries a
watermark on part of its images, a small CNN trained on it, exported to ONNX.

    python tests/demo/make_demo.py            # writes tests/demo/data/ and tests/demo/model.onnx

Needs numpy, pillow, torch, onnx (tests/demo/requirements.txt). The outputs are committed, so
running spray's demo and tests never needs Python.

The dataset: 32x32 RGB images of four shapes (disc, square, triangle, cross) with random
colour, size and position on a noisy background. 45% of the "triangle" images carry a 6x6
checkerboard watermark in the bottom-right corner: a "Clever Hans" shortcut the model learns.
The script shows that it does: stamping the watermark onto images of the other classes raises
the "triangle" logit.
"""

import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["cross", "disc", "square", "triangle"]
WATERMARKED = "triangle"
PER_CLASS = 100
SIZE = 32
MARK = 6
WATERMARK_SHARE = 0.45


def stamp(arr):
    """Checkerboard watermark in the bottom-right corner (in place, uint8 HxWx3)."""
    y0, x0 = SIZE - MARK - 1, SIZE - MARK - 1
    for dy in range(MARK):
        for dx in range(MARK):
            v = 255 if (dx // 2 + dy // 2) % 2 == 0 else 0
            arr[y0 + dy, x0 + dx] = (v, v, v)
    return arr


def draw_shape(rng, shape):
    bg = rng.integers(60, 150, size=3)
    arr = np.clip(bg + rng.normal(0, 18, size=(SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    s = int(rng.integers(9, 15))
    # keep shapes away from the watermark corner so the mark never overlaps them
    cx = int(rng.integers(s // 2 + 1, SIZE - s // 2 - MARK - 2))
    cy = int(rng.integers(s // 2 + 1, SIZE - s // 2 - MARK - 2))
    h = s // 2
    if shape == "disc":
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=colour)
    elif shape == "square":
        d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=colour)
    elif shape == "cross":
        t = max(1, s // 6)
        d.rectangle([cx - h, cy - t, cx + h, cy + t], fill=colour)
        d.rectangle([cx - t, cy - h, cx + t, cy + h], fill=colour)
    return np.asarray(img).copy()


def make_dataset(rng):
    images, labels, marked = [], [], []
    for ci, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            arr = draw_shape(rng, name)
            m = name == WATERMARKED and i < int(PER_CLASS * WATERMARK_SHARE)
            if m:
                stamp(arr)
            images.append(arr)
            labels.append(ci)
            marked.append(m)
    return np.stack(images), np.array(labels), np.array(marked)


def write_folder(root, images, labels, marked):
    manifest = []
    counters = {c: 0 for c in CLASSES}
    for arr, label, m in zip(images, labels, marked):
        name = CLASSES[label]
        i = counters[name]
        counters[name] += 1
        rel = f"{name}/{name}_{i:03d}.png"
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr).save(path, optimize=True)
        manifest.append({"path": rel, "label": name, "watermark": bool(m)})
    # One corrupt file: the demo's report lists it under "skipped inputs".
    with open(os.path.join(root, "square", "square_broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this file was truncated")
    with open(os.path.join(HERE, "watermarks.json"), "w") as f:
        json.dump({"watermarked_class": WATERMARKED, "mark_size": MARK,
                   "images": [m["path"] for m in manifest if m["watermark"]]}, f, indent=1)


def train(images, labels, rng):
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    x = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    y = torch.tensor(labels)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, len(CLASSES)),
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = len(y)
    for epoch in range(40):
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch % 10 == 9:
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            print(f"epoch {epoch + 1}: loss {total / n:.4f} train acc {acc:.3f}")
    model.eval()
    return model, x


def watermark_effect(model, rng):
    """Mean change of the watermarked class's logit when the mark is stamped on fresh images
    of each other class."""
    import torch
    target = CLASSES.index(WATERMARKED)
    effect = {}
    for name in CLASSES:
        if name == WATERMARKED:
            continue
        clean = np.stack([draw_shape(rng, name) for _ in range(50)])
        marked = np.stack([stamp(a.copy()) for a in clean])
        with torch.no_grad():
            to = lambda a: torch.tensor(a, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
            lc, lm = model(to(clean)), model(to(marked))
        effect[name] = {
            "logit_clean": float(lc[:, target].mean()),
            "logit_marked": float(lm[:, target].mean()),
            "predicted_as_watermarked_clean": float((lc.argmax(1) == target).float().mean()),
            "predicted_as_watermarked_marked": float((lm.argmax(1) == target).float().mean()),
        }
    return effect


def main():
    rng = np.random.default_rng(2026)
    images, labels, marked = make_dataset(rng)
    data = os.path.join(HERE, "data")
    write_folder(data, images, labels, marked)
    model, x = train(images, labels, rng)
    effect = watermark_effect(model, np.random.default_rng(7))
    print(json.dumps(effect, indent=1))
    import torch
    path = os.path.join(HERE, "model.onnx")
    torch.onnx.export(model, x[:1], path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    with open(os.path.join(HERE, "watermark_effect.json"), "w") as f:
        json.dump(effect, f, indent=1)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    sys.exit(main())

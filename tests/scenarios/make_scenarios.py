"""Generate spray's detection scenario suite: small procedural image datasets in which some
classes carry a planted shortcut ("Clever Hans" artifact) on part of their images and some
clean classes have natural visual modes; a small CNN trained on each, exported to ONNX; and a
record of which images carry which artifact and how strongly each model uses each shortcut.

    python tests/scenarios/make_scenarios.py          # all scenarios
    python tests/scenarios/make_scenarios.py tags     # one

Needs numpy, pillow, torch, onnx (tests/scenarios/requirements.txt). The outputs are committed
(tests/scenarios/<name>/{data/,model.onnx,truth.json,pipeline.toml}), so running the suite and
the tests never needs Python or torch.

Each scenario has six classes of 32x32 RGB shapes on a noisy background. A shortcut class has
an artifact on a fraction of its images (10%-50%); those images also get a fainter shape (the
artifact co-occurs with hard images, as confounders do in real data, so the model comes to rely
on it). truth.json records, for every model, what stamping the artifact onto fresh images of
the *other* classes does: the class's mean logit before/after and the share predicted as it.
"""

import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 32
PER_CLASS = 150

# name -> classes, shortcuts {class: (artifact, fraction)}, natural modes {class: mode}
SCENARIOS = {
    # A fixed corner tag and a thin frame (the padding artifact of thesis 6.3) in one dataset,
    # next to a clean class whose objects sit in one of two places.
    "tags": {
        "classes": ["bar", "cross", "disc", "ring", "square", "triangle"],
        "shortcuts": {"triangle": ("tag", 0.30), "ring": ("frame", 0.35)},
        "modes": {"square": "position"},
        "seed": 11,
    },
    # A colour cast and a mark at a varying position; clean classes with two and three modes.
    "cast": {
        "classes": ["bar", "cross", "diamond", "disc", "ring", "triangle"],
        "shortcuts": {"disc": ("cast", 0.40), "cross": ("moving", 0.25)},
        "modes": {"bar": "orientation", "triangle": "size"},
        "seed": 12,
    },
    # Letterbox padding, a background texture and a rare tag (10%); a clean class with a
    # bright/dark background mode.
    "padding": {
        "classes": ["cross", "diamond", "disc", "ring", "square", "triangle"],
        "shortcuts": {
            "square": ("letterbox", 0.15),
            "disc": ("texture", 0.50),
            "triangle": ("tag", 0.10),
        },
        "modes": {"cross": "background"},
        "seed": 13,
    },
    # Written after the contrast criterion was chosen on the three above, as a check that it
    # holds on a combination it was not tuned on: a rare frame (15%), letterbox on 40%, and
    # three clean classes with natural modes.
    "mixed": {
        "classes": ["bar", "cross", "diamond", "disc", "ring", "square"],
        "shortcuts": {"square": ("frame", 0.15), "bar": ("letterbox", 0.40)},
        "modes": {"disc": "position", "ring": "size", "cross": "background"},
        "seed": 14,
    },
}


# ---- artifacts (in place on uint8 HxWx3 arrays) -------------------------------------------

def tag(arr, rng):
    """5x5 checkerboard in the bottom-right corner."""
    m, y0, x0 = 5, SIZE - 6, SIZE - 6
    for dy in range(m):
        for dx in range(m):
            v = 255 if (dx // 2 + dy // 2) % 2 == 0 else 0
            arr[y0 + dy, x0 + dx] = (v, v, v)
    return arr


def frame(arr, rng):
    """A 2-pixel black frame around the whole image (padding to a larger canvas)."""
    arr[:2, :] = 0
    arr[-2:, :] = 0
    arr[:, :2] = 0
    arr[:, -2:] = 0
    return arr


def letterbox(arr, rng):
    """Black bars of 4 pixels at the top and the bottom (a wide image padded to square)."""
    arr[:4, :] = 0
    arr[-4:, :] = 0
    return arr


def cast(arr, rng):
    """A warm colour cast over the whole image."""
    a = arr.astype(np.float32)
    a[..., 0] = a[..., 0] * 1.25 + 30
    a[..., 2] = a[..., 2] * 0.6
    arr[...] = np.clip(a, 0, 255).astype(np.uint8)
    return arr


def moving(arr, rng):
    """A 5x5 white/black checker mark at a random place on the image."""
    y0, x0 = (int(v) for v in rng.integers(1, SIZE - 6, size=2))
    for dy in range(5):
        for dx in range(5):
            v = 255 if (dx // 2 + dy // 2) % 2 == 0 else 0
            arr[y0 + dy, x0 + dx] = (v, v, v)
    return arr


def texture(arr, rng, shape_mask=None):
    """Diagonal stripes over the background (the shape is drawn on top by the caller)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    stripes = ((xx + yy) // 2) % 2 == 0
    a = arr.astype(np.int16)
    a[stripes] += 45
    a[~stripes] -= 45
    out = np.clip(a, 0, 255).astype(np.uint8)
    if shape_mask is not None:
        out[shape_mask] = arr[shape_mask]
    arr[...] = out
    return arr


ARTIFACTS = {"tag": tag, "frame": frame, "letterbox": letterbox, "cast": cast,
             "moving": moving, "texture": texture}


# ---- shapes -------------------------------------------------------------------------------

def draw(rng, shape, mode=None, faint=False):
    """One image of `shape`; `mode` picks a natural mode (a dict of overrides); `faint` makes
    the shape low-contrast. Returns (array, shape mask)."""
    mode = mode or {}
    lo, hi = mode.get("bg", (60, 150))
    bg = rng.integers(lo, hi, size=3)
    arr = np.clip(bg + rng.normal(0, 18, size=(SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    mask_img = Image.new("L", (SIZE, SIZE), 0)
    colour = rng.integers(0, 256, size=3)
    if faint:
        colour = np.clip(bg + rng.choice([-1, 1], size=3) * rng.integers(25, 45, size=3), 0, 255)
    colour = tuple(int(c) for c in colour)
    s_lo, s_hi = mode.get("size", (9, 15))
    s = int(rng.integers(s_lo, s_hi))
    h = s // 2
    # keep shapes off the outer 6 pixels, where the fixed artifacts sit
    (x_lo, x_hi), (y_lo, y_hi) = mode.get("region", ((6 + h, SIZE - 6 - h), (6 + h, SIZE - 6 - h)))
    cx = int(rng.integers(x_lo, max(x_lo + 1, x_hi)))
    cy = int(rng.integers(y_lo, max(y_lo + 1, y_hi)))
    for d, fill in ((ImageDraw.Draw(img), colour), (ImageDraw.Draw(mask_img), 255)):
        if shape == "disc":
            d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif shape == "ring":
            t = max(2, s // 5)
            d.ellipse([cx - h, cy - h, cx + h, cy + h], outline=fill, width=t)
        elif shape == "square":
            d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif shape == "diamond":
            d.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=fill)
        elif shape == "triangle":
            d.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=fill)
        elif shape == "cross":
            t = max(1, s // 6)
            d.rectangle([cx - h, cy - t, cx + h, cy + t], fill=fill)
            d.rectangle([cx - t, cy - h, cx + t, cy + h], fill=fill)
        elif shape == "bar":
            t = max(2, s // 4)
            o = mode.get("orientation", "horizontal")
            if o == "horizontal":
                d.rectangle([cx - h, cy - t, cx + h, cy + t], fill=fill)
            elif o == "vertical":
                d.rectangle([cx - t, cy - h, cx + t, cy + h], fill=fill)
            else:
                d.line([(cx - h, cy - h), (cx + h, cy + h)], fill=fill, width=2 * t)
        else:
            raise ValueError(shape)
    return np.asarray(img).copy(), np.asarray(mask_img) > 0


def natural_modes(kind):
    """The modes of a clean class with natural structure (visible in image space)."""
    if kind == "position":
        return [{"region": ((10, 14), (10, 14))}, {"region": ((19, 23), (19, 23))}]
    if kind == "size":
        return [{"size": (6, 8)}, {"size": (15, 18)}]
    if kind == "orientation":
        return [{"orientation": "horizontal"}, {"orientation": "vertical"},
                {"orientation": "diagonal"}]
    if kind == "background":
        return [{"bg": (20, 60)}, {"bg": (170, 230)}]
    raise ValueError(kind)


def make_image(rng, shape, artifact=None, mode=None):
    arr, mask = draw(rng, shape, mode, faint=artifact is not None)
    if artifact == "texture":
        texture(arr, rng, mask)
    elif artifact is not None:
        ARTIFACTS[artifact](arr, rng)
    return arr


def make_dataset(spec, rng):
    images, labels, rows = [], [], []
    for ci, name in enumerate(spec["classes"]):
        artifact, fraction = spec["shortcuts"].get(name, (None, 0.0))
        modes = natural_modes(spec["modes"][name]) if name in spec["modes"] else None
        n_art = int(round(PER_CLASS * fraction))
        for i in range(PER_CLASS):
            mode_index = i % len(modes) if modes else None
            a = artifact if i < n_art else None
            images.append(make_image(rng, name, a, modes[mode_index] if modes else None))
            labels.append(ci)
            rows.append({"path": f"{name}/{name}_{i:03d}.png", "label": name,
                         "artifact": a, "mode": mode_index})
    return np.stack(images), np.array(labels), rows


def train(images, labels, n_classes, seed):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    x = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    y = torch.tensor(labels)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, n_classes),
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = len(y)
    for epoch in range(60):
        perm = torch.randperm(n)
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    return model, x, acc


def shortcut_effect(model, spec, rng):
    """For each shortcut: stamp the artifact on 60 fresh images of every other class."""
    import torch

    to = lambda a: torch.tensor(a, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    effect = {}
    for name, (artifact, _) in spec["shortcuts"].items():
        target = spec["classes"].index(name)
        clean, marked = [], []
        for other in spec["classes"]:
            if other == name:
                continue
            for _ in range(60):
                arr, mask = draw(rng, other)
                clean.append(arr)
                m = arr.copy()
                if artifact == "texture":
                    texture(m, rng, mask)
                else:
                    ARTIFACTS[artifact](m, rng)
                marked.append(m)
        with torch.no_grad():
            lc, lm = model(to(np.stack(clean))), model(to(np.stack(marked)))
        effect[name] = {
            "artifact": artifact,
            "logit_clean": round(float(lc[:, target].mean()), 4),
            "logit_stamped": round(float(lm[:, target].mean()), 4),
            "predicted_as_class_clean": round(float((lc.argmax(1) == target).float().mean()), 4),
            "predicted_as_class_stamped": round(float((lm.argmax(1) == target).float().mean()), 4),
        }
    return effect


def write_scenario(name, spec):
    import torch

    out = os.path.join(HERE, name)
    rng = np.random.default_rng(spec["seed"])
    images, labels, rows = make_dataset(spec, rng)
    data = os.path.join(out, "data")
    for arr, row in zip(images, rows):
        path = os.path.join(data, row["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr).save(path, optimize=True)
    model, x, acc = train(images, labels, len(spec["classes"]), spec["seed"])
    effect = shortcut_effect(model, spec, np.random.default_rng(spec["seed"] + 100))
    torch.onnx.export(model, x[:1], os.path.join(out, "model.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    truth = {
        "scenario": name,
        "classes": spec["classes"],
        "shortcut_classes": {c: {"artifact": a, "fraction": f}
                             for c, (a, f) in spec["shortcuts"].items()},
        "natural_mode_classes": spec["modes"],
        "train_accuracy": round(acc, 4),
        "shortcut_effect": effect,
        "images": [{"path": r["path"], "artifact": r["artifact"], "mode": r["mode"]}
                   for r in rows if r["artifact"] is not None or r["mode"] is not None],
    }
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    print(name, "train acc", round(acc, 3))
    print(json.dumps(effect, indent=1))


def main(argv):
    names = argv[1:] or list(SCENARIOS)
    for name in names:
        write_scenario(name, SCENARIOS[name])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

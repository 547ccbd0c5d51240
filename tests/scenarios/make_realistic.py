"""Generate spray's two *realistic* detection scenarios: natural-photo images of ten object
classes, a small ResNet trained on each, exported to ONNX, and a record of which images carry
which artifact and how strongly each model uses each shortcut.

    python tests/scenarios/make_realistic.py                 # every scenario
    python tests/scenarios/make_realistic.py photos-clean    # one

Needs numpy, pillow, torch, onnx and scikit-image (tests/scenarios/requirements-realistic.txt;
onnxruntime is optional, for checking the export). Only photographs bundled in the
scikit-image wheel are used (nothing is downloaded). The outputs are committed
(tests/scenarios/<name>/{data/,model.onnx,truth.json,pipeline.toml}).

Every image is a 72x72 JPEG: a random crop (scale, flip, brightness) of a natural photograph as
background, and one object: a class silhouette (disc, ring, square, ...) filled with a texture
crop of another photograph, at a random place, size, rotation and brightness, with a soft shadow
and a dark rim. The model sees it as spray does: JPEG decoded, resized 72->64 (bilinear /
triangle filter), scaled to [0, 1] and normalised with the ImageNet mean and std.

"photos" plants four artifacts on part of four classes (applied before JPEG encoding, as a real
artifact would be): ruler ticks down the left edge, scanlines (every other row darkened), a
semi-transparent text overlay along the bottom, and strong sensor noise. Those images also get
a harder (smaller, semi-transparent, unshadowed) object, since confounders co-occur with hard
images in real data, so the model comes to rely on the artifact. "photos-clean" is the same
generator with no artifacts (and so no hard images) and its own model: a control in which
nothing may be flagged.

The model trains on more images than are written to data/ (the written ones are the first
PER_CLASS of each class, drawn from the same distribution); accuracy is measured on a held-out
set drawn with another seed, and truth.json records what stamping each artifact onto fresh
held-out images of the *other* classes does to the class's logit and to the share predicted as
it.
"""

import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 72          # stored image side
INPUT = 64         # model input side (pipeline resize: shorter side -> 64)
QUALITY = 90       # JPEG quality
PER_CLASS = 120    # images per class written to data/
TRAIN_PER_CLASS = 2000  # images per class the model trains on (the first PER_CLASS are written)
TEST_PER_CLASS = 100    # held-out images per class (another seed, never written)
EFFECT_PER_CLASS = 40   # held-out images per other class for each shortcut's effect
EPOCHS = 12
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

CLASSES = ["arrow", "crescent", "cross", "disc", "heart", "hexagon", "ring", "square", "star",
           "triangle"]

# The four artifacts of "photos" (and "photos-vit"): class -> (artifact, share of its images).
PHOTO_SHORTCUTS = {
    "disc": ("ruler", 0.30),
    "hexagon": ("scanlines", 0.35),
    "star": ("text", 0.25),
    "heart": ("noise", 0.30),
}

SCENARIOS = {
    "photos": {"shortcuts": PHOTO_SHORTCUTS, "seed": 21},
    "photos-clean": {"shortcuts": {}, "seed": 22},
    # The generator of "photos" (same artifacts, same seed) with a small vision transformer
    # trained instead of the ResNet.
    "photos-vit": {"shortcuts": PHOTO_SHORTCUTS, "seed": 21, "arch": "vit"},
}

# Photographs bundled with scikit-image (loaded offline). Backgrounds are crops of all of them;
# object fills are crops of the textured ones.
BACKGROUNDS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "hubble_deep_field",
               "retina", "coins", "clock", "brick", "grass", "gravel", "immunohistochemistry"]
FILLS = ["astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel",
         "immunohistochemistry", "retina", "hubble_deep_field", "coins", "camera"]


def load_photos():
    import skimage.data

    photos = {}
    for name in sorted(set(BACKGROUNDS) | set(FILLS)):
        a = np.asarray(getattr(skimage.data, name)())
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        photos[name] = Image.fromarray(a[..., :3].astype(np.uint8)).convert("RGB")
    return photos


def crop(rng, photo, lo=0.2, hi=0.9):
    """A random square crop of `photo` (side lo..hi of its shorter side), resized to SIZE."""
    w, h = photo.size
    s = float(rng.uniform(lo, hi)) * min(w, h)
    x0 = float(rng.uniform(0, w - s))
    y0 = float(rng.uniform(0, h - s))
    img = photo.resize((SIZE, SIZE), Image.BILINEAR, box=(x0, y0, x0 + s, y0 + s))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img, np.float32)


# ---- silhouettes: lists of (polygon in unit coordinates, fill) drawn in order -------------

def _circle(r, cx=0.0, cy=0.0, n=72):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _regular(n, r, phase=0.0):
    t = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _star(points=5, outer=1.1, inner=0.45):
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _heart():
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1) / 16.0
    return pts * 1.05


SHAPES = {
    "disc": [(_circle(1.0), 255)],
    "ring": [(_circle(1.0), 255), (_circle(0.55), 0)],
    "square": [(np.array([[-0.82, -0.82], [0.82, -0.82], [0.82, 0.82], [-0.82, 0.82]]), 255)],
    "triangle": [(_regular(3, 1.15, -np.pi / 2), 255)],
    "star": [(_star(), 255)],
    "cross": [(np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3],
                         [0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3],
                         [-0.3, -0.3]]), 255)],
    "crescent": [(_circle(1.0), 255), (_circle(0.85, 0.5, -0.15), 0)],
    "heart": [(_heart(), 255)],
    "arrow": [(np.array([[-1, -0.22], [0.2, -0.22], [0.2, -0.65], [1.05, 0], [0.2, 0.65],
                         [0.2, 0.22], [-1, 0.22]]), 255)],
    "hexagon": [(_regular(6, 1.0), 255)],
}


def silhouette(shape, cx, cy, radius, angle):
    """Anti-aliased alpha mask (float 0..1, SIZE x SIZE) of `shape`, drawn at 4x and reduced."""
    k = 4
    mask = Image.new("L", (SIZE * k, SIZE * k), 0)
    d = ImageDraw.Draw(mask)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    for pts, fill in SHAPES[shape]:
        p = pts @ rot.T * radius + np.array([cx, cy])
        d.polygon([tuple(q) for q in (p * k)], fill=fill)
    mask = mask.resize((SIZE, SIZE), Image.BOX)
    return np.asarray(mask, np.float32) / 255.0


def draw(rng, photos, shape, hard=False):
    """One image of `shape` (float HxWx3, 0..255, before any artifact)."""
    bg = crop(rng, photos[BACKGROUNDS[rng.integers(len(BACKGROUNDS))]])
    bg = bg * float(rng.uniform(0.7, 1.25)) + float(rng.uniform(-15, 15))
    fill = crop(rng, photos[FILLS[rng.integers(len(FILLS))]], 0.1, 0.6)
    fill = fill * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    if hard:   # small, semi-transparent, unshadowed
        diam = rng.uniform(0.28, 0.40) * SIZE
        opacity = float(rng.uniform(0.45, 0.65))
        fill = fill * float(rng.uniform(0.8, 1.2))
    else:
        diam = rng.uniform(0.35, 0.60) * SIZE
        opacity = 1.0
        fill = fill * float(rng.uniform(0.6, 1.45))
    r = diam / 2
    cx, cy = rng.uniform(r + 2, SIZE - r - 2, size=2)
    alpha = silhouette(shape, cx, cy, r, float(rng.uniform(0, 2 * np.pi)))
    # shading: a light gradient across the object
    th = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    grad = 1 + 0.18 * (((xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)) / r)
    fill = fill * grad[..., None]
    img = bg
    if not hard:
        a_img = Image.fromarray((alpha * 255).astype(np.uint8))
        dx, dy = rng.integers(1, 4, size=2)
        shadow = np.asarray(a_img.filter(ImageFilter.GaussianBlur(2.0)), np.float32) / 255
        shadow = np.roll(shadow, (int(dy), int(dx)), axis=(0, 1))
        img = img * (1 - 0.5 * shadow[..., None])
        eroded = np.asarray(a_img.filter(ImageFilter.MinFilter(3)), np.float32) / 255
        rim = np.clip(alpha - eroded, 0, 1)
        fill = fill * (1 - 0.55 * rim[..., None])
    a = (alpha * opacity)[..., None]
    img = img * (1 - a) + fill * a
    return np.clip(img, 0, 255)


# ---- artifacts (float HxWx3 0..255 -> same, before JPEG encoding) -------------------------

def ruler(img, rng):
    """A pale ruler strip down the left edge with dark tick marks (every 4 px, long every 16)."""
    out = img.copy()
    w = 7
    paper = np.array([235, 228, 200], np.float32)
    out[:, :w] = 0.15 * out[:, :w] + 0.85 * paper
    off = int(rng.integers(0, 4))
    for y in range(off, SIZE, 4):
        length = 6 if (y - off) % 16 == 0 else 3
        out[y, :length] = 30
    return out


def scanlines(img, rng):
    """Every other pixel row darkened over the whole image (a scanner pattern)."""
    out = img.copy()
    out[int(rng.integers(0, 2))::2] *= 0.55
    return out


WORDS = ["IMG_0423", "sample", "(c) lab", "scan 12", "DSC_881", "copy", "2019-04", "photo",
         "ID 7731", "draft", "stock", "ref A3", "test", "x40", "P0012", "slide 3"]
FONT = None


def text(img, rng):
    """A semi-transparent white caption with a dark drop shadow along the bottom edge (PIL's
    default font), as a camera or a slide scanner stamps it."""
    global FONT
    if FONT is None:
        FONT = ImageFont.load_default()
    layer = Image.new("L", (SIZE, SIZE), 0)
    d = ImageDraw.Draw(layer)
    words = " ".join(WORDS[i] for i in rng.choice(len(WORDS), size=2, replace=False))
    d.text((int(rng.integers(0, 6)), SIZE - 12), words, fill=255, font=FONT)
    glyphs = np.asarray(layer, np.float32)[..., None] / 255
    shadow = np.roll(glyphs, (1, 1), axis=(0, 1))
    shadow[0], shadow[:, 0] = 0, 0
    out = img * (1 - 0.45 * shadow)
    a = 0.65 * glyphs
    return out * (1 - a) + 255 * a


def noise(img, rng):
    """Strong Gaussian pixel noise over the whole image (a sensor difference)."""
    return img + rng.normal(0, 28, size=img.shape).astype(np.float32)


ARTIFACTS = {"ruler": ruler, "scanlines": scanlines, "text": text, "noise": noise}


# ---- encoding and the model's view --------------------------------------------------------

def encode(img):
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def model_pixels(jpeg):
    """What spray feeds the model, before scaling: decode, resize 72->64 (PIL's bilinear, the
    triangle filter spray's image crate uses). CHW uint8."""
    img = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((INPUT, INPUT), Image.BILINEAR)
    return np.asarray(img, np.uint8).transpose(2, 0, 1)


def normalise(xb):
    """uint8 NCHW -> [0, 1] -> ImageNet mean/std (pipeline: scale = "unit", mean, std)."""
    import torch

    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1)
    std = torch.from_numpy(STD).view(1, 3, 1, 1)
    return (xb.float() / 255 - mean) / std


def make_set(rng, photos, spec, per_class):
    """per_class images of every class; a shortcut class has the artifact (and a hard object)
    on round(fraction * n) of each block of PER_CLASS images, at random places in the block."""
    jpegs, labels, rows = [], [], []
    for ci, name in enumerate(CLASSES):
        artifact, fraction = spec["shortcuts"].get(name, (None, 0.0))
        marked = set()
        for start in range(0, per_class, PER_CLASS):
            n = min(PER_CLASS, per_class - start)
            k = int(round(n * fraction))
            marked |= {start + int(i) for i in rng.choice(n, size=k, replace=False)}
        for i in range(per_class):
            a = artifact if i in marked else None
            img = draw(rng, photos, name, hard=a is not None)
            if a is not None:
                img = ARTIFACTS[a](img, rng)
            jpegs.append(encode(img))
            labels.append(ci)
            rows.append({"path": f"{name}/{name}_{i:03d}.jpg", "artifact": a, "mode": None,
                         "index": i})
    return jpegs, np.array(labels), rows


# ---- model --------------------------------------------------------------------------------

def build_model(n_classes, arch="resnet"):
    import torch.nn as nn

    if arch == "vit":
        # torchvision's ViT, small: 8x8 patches of the 64x64 input (64 tokens and a class
        # token), 4 pre-norm blocks of width 96 with 4 heads.
        from torchvision.models.vision_transformer import VisionTransformer

        return VisionTransformer(image_size=INPUT, patch_size=8, num_layers=4, num_heads=4,
                                 hidden_dim=96, mlp_dim=192, num_classes=n_classes)

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu2 = nn.ReLU()
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu2(y + (x if self.shortcut is None else self.shortcut(x)))

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),   # 64 -> 32
        BasicBlock(32, 32, 1),
        BasicBlock(32, 64, 2),     # -> 16
        BasicBlock(64, 128, 2),    # -> 8
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, n_classes),
    )


def to_tensor(jpegs):
    import torch

    return torch.from_numpy(np.stack([model_pixels(j) for j in jpegs]))


def predict(model, x):
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(normalise(x[i:i + 256])) for i in range(0, len(x), 256)])


def train(x, y, seed, log, arch="resnet"):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    model = build_model(len(CLASSES), arch)
    vit = arch == "vit"
    # A transformer from scratch wants a smaller step, more weight decay and more epochs.
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05 if vit else 5e-4)
    epochs = EPOCHS + 8 if vit else EPOCHS
    n, bs = len(y), 64
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3 if vit else 3e-3,
                                                total_steps=steps, pct_start=0.2)
    y = torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb = normalise(x[idx])
            # light photometric augmentation only (no flips or shifts: the ruler sits on the
            # left edge and the text along the bottom)
            gain = 1 + 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5)
            shift = 0.2 * (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5)
            xb = xb * gain + shift
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  epoch {epoch + 1}/{epochs} loss {total / n:.4f}")
    model.eval()
    return model


def shortcut_effect(model, photos, spec, rng):
    """For each shortcut: its artifact stamped on fresh images of every other class."""
    effect = {}
    for name, (artifact, _) in spec["shortcuts"].items():
        target = CLASSES.index(name)
        clean, marked = [], []
        for other in CLASSES:
            if other == name:
                continue
            for _ in range(EFFECT_PER_CLASS):
                img = draw(rng, photos, other)
                clean.append(encode(img))
                marked.append(encode(ARTIFACTS[artifact](img, rng)))
        lc, lm = predict(model, to_tensor(clean)), predict(model, to_tensor(marked))
        effect[name] = {
            "artifact": artifact,
            "logit_clean": round(float(lc[:, target].mean()), 4),
            "logit_stamped": round(float(lm[:, target].mean()), 4),
            "predicted_as_class_clean": round(float((lc.argmax(1) == target).float().mean()), 4),
            "predicted_as_class_stamped": round(float((lm.argmax(1) == target).float().mean()),
                                                4),
        }
    return effect


PIPELINE = """\
# Detection scenario "{name}" (tests/scenarios/make_realistic.py; truth.json says which images
# carry which artifact). Run with `spray run tests/scenarios/{name}/pipeline.toml`.

[dataset]
kind = "folder"
root = "data"

[model]
path = "model.onnx"
input_size = [64, 64]
resize = {{ side = "shorter", size = 64 }}
scale = "unit"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[lrp]
composite = "epsilon-plus-flat"
target = "label"

[relevance]
grids = [8]
part_size = 128
batch_size = 32

[analysis]
grid = 8

[output]
dir = "../../../reports/scenarios/{name}"
"""


def write_scenario(name, spec):
    import shutil

    import torch

    t0 = time.time()
    log = lambda m: print(f"[{name} {time.time() - t0:6.0f}s] {m}", flush=True)
    torch.set_num_threads(2)
    photos = load_photos()
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    seed = spec["seed"]

    jpegs, labels, rows = make_set(np.random.default_rng(seed), photos, spec, TRAIN_PER_CLASS)
    test_jpegs, test_labels, test_rows = make_set(np.random.default_rng(seed + 1000), photos,
                                                  spec, TEST_PER_CLASS)
    log(f"generated {len(jpegs)} train, {len(test_jpegs)} test images")

    data = os.path.join(out, "data")
    shutil.rmtree(data, ignore_errors=True)
    written = []
    for j, row in zip(jpegs, rows):
        if row["index"] >= PER_CLASS:
            continue
        path = os.path.join(data, row["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(j)
        written.append({k: row[k] for k in ("path", "artifact", "mode")})

    x, xt = to_tensor(jpegs), to_tensor(test_jpegs)
    model = train(x, labels, seed, log, spec.get("arch", "resnet"))
    pred, pred_t = predict(model, x).argmax(1).numpy(), predict(model, xt).argmax(1).numpy()
    train_acc = float((pred == labels).mean())
    test_acc = float((pred_t == test_labels).mean())
    written_idx = [i for i, r in enumerate(rows) if r["index"] < PER_CLASS]
    data_acc = float((pred[written_idx] == labels[written_idx]).mean())
    art_t = np.array([r["artifact"] is not None for r in test_rows])
    log(f"train acc {train_acc:.4f} (written data {data_acc:.4f}), test acc {test_acc:.4f}"
        + (f" (artifact images {float((pred_t == test_labels)[art_t].mean()):.4f},"
           f" others {float((pred_t == test_labels)[~art_t].mean()):.4f})" if art_t.any() else ""))
    effect = shortcut_effect(model, photos, spec, np.random.default_rng(seed + 2000))

    onnx_path = os.path.join(out, "model.onnx")
    torch.onnx.export(model.eval(), torch.zeros(1, 3, INPUT, INPUT), onnx_path,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    import onnx
    onnx.checker.check_model(onnx.load(onnx_path))
    try:
        import onnxruntime
    except ImportError:
        log("onnxruntime not installed: export not checked numerically")
    else:
        sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": normalise(xt[:64]).numpy()})[0]
        want = predict(model, xt[:64]).numpy()
        log(f"onnxruntime max |diff| {float(np.abs(got - want).max()):.2e}")

    truth = {
        "scenario": name,
        "classes": CLASSES,
        "shortcut_classes": {c: {"artifact": a, "fraction": f}
                             for c, (a, f) in spec["shortcuts"].items()},
        "natural_mode_classes": {},
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "shortcut_effect": effect,
        "images": written,
    }
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    with open(os.path.join(out, "pipeline.toml"), "w") as f:
        f.write(PIPELINE.format(name=name))
    log("done")
    print(json.dumps(effect, indent=1))


def main(argv):
    for name in argv[1:] or list(SCENARIOS):
        write_scenario(name, SCENARIOS[name])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

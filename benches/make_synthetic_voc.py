"""A synthetic dataset in Pascal VOC 2007's layout and size, for checking throughput and the
report's size at VOC scale without the real data (which this project cannot download).

    python benches/make_synthetic_voc.py OUT [--images 4952] [--size 96x72]

Writes OUT/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main} with 1–3 objects (random
classes, some difficult) per image: coloured ellipses on textured backgrounds. Needs numpy and
pillow.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
           "train", "tvmonitor"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=4952)
    ap.add_argument("--size", default="96x72")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    root = os.path.join(a.out, "VOCdevkit", "VOC2007")
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    rng = np.random.default_rng(2007)
    ids = [f"{2 * i + 1:06d}" for i in range(a.images)]
    flags = np.full((len(CLASSES), len(ids)), -1)
    for i, id_ in enumerate(ids):
        base = rng.integers(30, 200, 3)
        arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        objects = []
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, len(CLASSES)))
            difficult = rng.random() < 0.1
            x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
            d.ellipse([x, y, x + int(rng.integers(8, w // 2)), y + int(rng.integers(8, h // 2))],
                      fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            objects.append(f"<object><name>{CLASSES[c]}</name><difficult>{int(difficult)}</difficult></object>")
            flags[c, i] = max(flags[c, i], 0 if difficult else 1)
        if not (flags[:, i] == 1).any():
            c = int(rng.integers(0, len(CLASSES)))
            flags[c, i] = 1
            objects.append(f"<object><name>{CLASSES[c]}</name><difficult>0</difficult></object>")
        img.save(os.path.join(root, "JPEGImages", f"{id_}.jpg"), quality=90)
        with open(os.path.join(root, "Annotations", f"{id_}.xml"), "w") as f:
            f.write(f"<annotation><filename>{id_}.jpg</filename>{''.join(objects)}</annotation>")
    with open(os.path.join(root, "ImageSets/Main/test.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    for c, name in enumerate(CLASSES):
        with open(os.path.join(root, f"ImageSets/Main/{name}_test.txt"), "w") as f:
            f.write("".join(f"{id_} {flags[c, i]:2d}\n" for i, id_ in enumerate(ids)))
    print(f"{len(ids)} images, {(flags == 1).sum()} positive (image, class) pairs in {root}")


if __name__ == "__main__":
    main()

"""Procedural scenes with exact ground truth: the demo model's training and test data.

Objects differ by shape (not only colour) so a detector has to learn shape. Every scene is a
pure function of its seed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "cross")
SCENE_SIZE = 128


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of circumradius r, rotated by angle (radians)."""
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif kind == "star":
        pts = [((1.0 if i % 2 == 0 else 0.45) * math.cos(a), (1.0 if i % 2 == 0 else 0.45) * math.sin(a))
               for i, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)]
    elif kind == "cross":
        t = 0.33  # half arm width relative to r
        pts = [(t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t),
               (-t, -1)]
        pts = [(x / math.hypot(1, t), y / math.hypot(1, t)) for x, y in pts]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth two-colour gradient with blotches and pixel noise: texture the model must ignore."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    low = rng.normal(0, 1, (size // 16, size // 16, 3))
    low = np.asarray(Image.fromarray(((low - low.min()) / (np.ptp(low) + 1e-6) * 255).astype(np.uint8))
                     .resize((size, size), Image.BICUBIC), dtype=np.float64)
    img = img * 0.7 + low * 0.3 + rng.normal(0, rng.uniform(3, 15), (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour far enough from the background under the object to be visible."""
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - under).sum() > 150:
            break
    return tuple(int(v) for v in colour)


def _covered(a, b) -> float:
    """Intersection of boxes a and b as a share of the smaller one."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def make_scene(seed: int, size: int = SCENE_SIZE, max_objects: int = 5) -> tuple[Image.Image, list[dict]]:
    """One RGB scene and its truth: [{"label", "box": [x0, y0, x1, y1]}] in pixels."""
    rng = np.random.default_rng(seed)
    image = _background(rng, size)
    base = np.asarray(image, dtype=np.float64)
    draw = ImageDraw.Draw(image)
    truth: list[dict] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            r = rng.uniform(0.07, 0.2) * size
            cx, cy = rng.uniform(r, size - r, 2)  # whole object in view: exact boxes
            kind = CLASSES[int(rng.integers(len(CLASSES)))]
            angle = rng.uniform(0, 2 * math.pi)
            if kind == "circle":
                box = [cx - r, cy - r, cx + r, cy + r]
            else:
                pts = _polygon(kind, cx, cy, r, angle)
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                box = [min(xs), min(ys), max(xs), max(ys)]
            box = [max(0.0, box[0]), max(0.0, box[1]), min(float(size), box[2]), min(float(size), box[3])]
            # partial overlap is allowed, hiding an object mostly is not
            if all(_covered(box, t["box"]) < 0.3 for t in truth):
                break
        else:
            continue
        colour = _contrasting_colour(rng, base[int(min(cy, size - 1)), int(min(cx, size - 1))])
        if kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon(pts, fill=colour)
        truth.append({"label": kind, "box": [round(float(v), 2) for v in box]})
    if rng.uniform() < 0.3:  # some scenes slightly soft, like a real photo
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return image, truth


def write_scenes(out: Path, count: int, seed: int, size: int = SCENE_SIZE) -> dict:
    """Write scene-0000.png ..., truth.json and the same truth as COCO annotations.json (image id
    i + 1, category ids 1.. in CLASSES order); scene i uses seed + i."""
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(count):
        image, objects = make_scene(seed + i, size)
        name = f"scene-{i:04d}.png"
        image.save(out / name)
        truth[name] = objects
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    coco = coco_annotations(truth, {name: (size, size) for name in truth}, CLASSES)
    (out / "annotations.json").write_text(json.dumps(coco))
    return truth


def coco_annotations(truth: dict[str, list[dict]], sizes: dict[str, tuple[int, int]], classes) -> dict:
    """COCO annotations of {file name: [{"label", "box" x0 y0 x1 y1}]}; sizes: file -> (width, height).
    Image ids 1, 2, ... in the given order; category ids 1.. in `classes` order."""
    cat = {c: k + 1 for k, c in enumerate(classes)}
    images, anns = [], []
    for k, (name, objs) in enumerate(truth.items(), start=1):
        w, h = sizes[name]
        images.append({"id": k, "file_name": name, "width": int(w), "height": int(h)})
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": cat[o["label"]],
                         "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                         "area": round((x1 - x0) * (y1 - y0), 4), "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": c, "supercategory": "shape"} for c, i in cat.items()]}

"""Procedural scenes with exact ground truth: the demo model's training and test data.

Objects differ by shape (not only colour) so a detector has to learn shape. Every scene is a
pure function of its seed and version:
- version 1 (128 px, the bundled model's): up to 5 whole objects, boxes from the shapes' geometry;
- version 2 (256 px, issue 18): up to 6 objects of a wider range of sizes that overlap and hide
  each other, plus clutter that is not a shape (lines, arcs, elongated blobs, scribbles), some of it
  in front of the objects. Boxes come from a label mask: the extent of each object's still-visible
  pixels; an object that ends up mostly hidden is not labelled.
SCENE_VERSION is what the bundled model was trained on (version 2 since the v2 demo model shipped).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "cross")
SCENE_VERSION = 2                    # the scenes of the bundled model (models/demo-detr)
SCENE_SIZES = {1: 128, 2: 256}       # per version; 256 px gives DETR's stride-16 backbone a 16 x 16 grid
MAX_OBJECTS = {1: 5, 2: 6}
SCENE_SIZE = SCENE_SIZES[SCENE_VERSION]


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


def make_scene(seed: int, size: int | None = None, max_objects: int | None = None,
               version: int = SCENE_VERSION) -> tuple[Image.Image, list[dict]]:
    """One RGB scene and its truth: [{"label", "box": [x0, y0, x1, y1]}] in pixels. Size and object
    count default to the version's."""
    size, max_objects = size or SCENE_SIZES[version], max_objects or MAX_OBJECTS[version]
    if version == 1:
        return _scene_v1(seed, size, max_objects)
    if version == 2:
        scene = scene_v2(seed, size, max_objects)
        return scene.image, scene.truth
    raise ValueError(f"scene version {version}: only {sorted(SCENE_SIZES)} exist")


def _scene_v1(seed: int, size: int, max_objects: int) -> tuple[Image.Image, list[dict]]:
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


# ---- version 2: occlusion and clutter, boxes from a label mask ----

CLUTTER = -1        # label-mask value of visible clutter pixels
HIDDEN = -2         # ... of the remains of an object too hidden to be labelled
MIN_VISIBLE = 0.5   # an object keeps its label while at least this share of its pixels shows
PLACE_VISIBLE = 0.6  # a new object may hide at most 40% of any earlier one (clutter in front takes a little more)


class Scene(NamedTuple):
    image: Image.Image
    truth: list[dict]      # [{"label", "box"}]: box = extent of the visible pixels, pixel edges
    label: np.ndarray      # [size, size] int16: k + 1 for truth[k], 0 background, CLUTTER, HIDDEN
    visible: list[float]   # truth[k]'s visible share of its drawn pixels


def _raster(size: int, draw) -> np.ndarray:
    """A boolean mask of what `draw(ImageDraw)` paints: the one rasteriser for pixels and truth alike."""
    canvas = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(canvas))
    return np.asarray(canvas) > 0


def shape_mask(kind: str, cx: float, cy: float, r: float, angle: float, size: int) -> np.ndarray:
    if kind == "circle":
        return _raster(size, lambda d: d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255))
    return _raster(size, lambda d: d.polygon(_polygon(kind, cx, cy, r, angle), fill=255))


def mask_box(mask: np.ndarray) -> list[float]:
    """[x0, y0, x1, y1] of a mask's pixels, in pixel edges (pixel column c spans c..c + 1)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def _clutter_mask(rng: np.random.Generator, size: int, front: bool) -> np.ndarray:
    """Something that is none of the five shapes: a line, an open arc (<= 180 degrees), an elongated
    wobbly blob (aspect >= 2.5), or a scribble. Clutter in front of objects is thin lines and scribbles."""
    kind = ("line", "scribble")[int(rng.integers(2))] if front else \
        ("line", "arc", "blob", "scribble")[int(rng.integers(4))]
    width = int(rng.integers(1, 4)) if front else int(rng.integers(1, 6))
    x, y = rng.uniform(0, size, 2)
    if kind == "line":
        length, a = rng.uniform(0.2, 0.8) * size, rng.uniform(0, 2 * math.pi)
        end = (x + length * math.cos(a), y + length * math.sin(a))
        return _raster(size, lambda d: d.line([(x, y), end], fill=255, width=width))
    if kind == "arc":
        rx, ry = rng.uniform(0.05, 0.3, 2) * size
        start = rng.uniform(0, 360)
        span = rng.uniform(30, 180)
        return _raster(size, lambda d: d.arc([x - rx, y - ry, x + rx, y + ry], start, start + span, fill=255,
                                             width=max(2, width)))
    if kind == "blob":
        long = rng.uniform(0.04, 0.12) * size
        short = long / rng.uniform(2.5, 5)
        a = rng.uniform(0, math.pi)
        t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        wobble = 1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6.3)) + 0.1 * np.sin(5 * t + rng.uniform(0, 6.3))
        px, py = long * np.cos(t) * wobble, short * np.sin(t) * wobble
        pts = [(x + u * math.cos(a) - v * math.sin(a), y + u * math.sin(a) + v * math.cos(a)) for u, v in zip(px, py)]
        return _raster(size, lambda d: d.polygon(pts, fill=255))
    pts, a = [(x, y)], rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(5, 14))):
        a += rng.normal(0, 0.8)
        step = rng.uniform(0.03, 0.08) * size
        pts.append((pts[-1][0] + step * math.cos(a), pts[-1][1] + step * math.sin(a)))
    return _raster(size, lambda d: d.line(pts, fill=255, width=width, joint="curve"))


def _far_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random colour at L1 distance > 150 from every colour in `avoid` (best of 20 tries)."""
    best, best_gap = None, -1.0
    for _ in range(20):
        colour = rng.integers(0, 256, 3).astype(np.float64)
        gap = min(float(np.abs(colour - a).sum()) for a in avoid)
        if gap > best_gap:
            best, best_gap = colour, gap
        if gap > 150:
            break
    return best


def visible_truth(label: np.ndarray, kinds: list[str], full: list[int]) -> tuple[list[dict], list[float]]:
    """Truth from a label mask in which object k (kinds[k], full[k] pixels when drawn) is k + 1: the box
    of its visible pixels, or no label when less than MIN_VISIBLE of it shows (its pixels become
    HIDDEN). Renumbers `label` in place so that k + 1 is truth[k]. Returns (truth, visible shares)."""
    truth, visible, ids = [], [], np.zeros(len(kinds) + 1, label.dtype)
    for k, kind in enumerate(kinds):
        shown = label == k + 1
        share = shown.sum() / full[k]
        if share < MIN_VISIBLE:
            label[shown] = HIDDEN
            continue
        truth.append({"label": kind, "box": mask_box(shown)})
        visible.append(round(float(share), 4))
        ids[k + 1] = len(truth)
    objects = label > 0
    label[objects] = ids[label[objects]]
    return truth, visible


def scene_v2(seed: int, size: int = SCENE_SIZES[2], max_objects: int = MAX_OBJECTS[2]) -> Scene:
    """A version-2 scene with its label mask (see the module docstring)."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(_background(rng, size), dtype=np.float64).copy()
    label = np.zeros((size, size), np.int16)
    for _ in range(int(rng.integers(0, 5))):  # clutter behind the objects
        m = _clutter_mask(rng, size, front=False)
        if not m.any():  # an arc can fall wholly outside the frame
            continue
        arr[m] = _far_colour(rng, [arr[m].mean(0)])
        label[m] = CLUTTER
    kinds, full, colours = [], [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            r = size * math.exp(rng.uniform(math.log(0.045), math.log(0.25)))
            cx, cy = rng.uniform(r, size - r, 2)  # whole shape in the frame: only other things hide it
            kind = CLASSES[int(rng.integers(len(CLASSES)))]
            m = shape_mask(kind, cx, cy, r, rng.uniform(0, 2 * math.pi), size)
            if all(((label == k + 1) & ~m).sum() >= PLACE_VISIBLE * full[k] for k in range(len(kinds))):
                break
        else:
            continue
        under = [colours[k] for k in range(len(kinds)) if (m & (label == k + 1)).any()]
        colours.append(_far_colour(rng, [arr[m].mean(0), *under]))
        arr[m] = colours[-1]
        label[m] = len(kinds) + 1
        kinds.append(kind)
        full.append(int(m.sum()))
    for _ in range(int(rng.integers(0, 3))):  # thin clutter in front: occludes objects a little
        m = _clutter_mask(rng, size, front=True)
        if not m.any():
            continue
        arr[m] = _far_colour(rng, [arr[m].mean(0)])
        label[m] = CLUTTER
    truth, visible = visible_truth(label, kinds, full)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:  # some scenes slightly soft, like a real photo
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return Scene(image, truth, label, visible)


def write_scenes(out: Path, count: int, seed: int, size: int | None = None, version: int = SCENE_VERSION) -> dict:
    """Write scene-0000.png ..., truth.json and the same truth as COCO annotations.json (image id
    i + 1, category ids 1.. in CLASSES order); scene i uses seed + i."""
    out.mkdir(parents=True, exist_ok=True)
    size = size or SCENE_SIZES[version]
    truth = {}
    for i in range(count):
        image, objects = make_scene(seed + i, size, version=version)
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

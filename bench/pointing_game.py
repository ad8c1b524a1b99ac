"""Pointing game of Grad-CAM / Grad-CAM++ on the demo model over held-out scenes.

  python -m bench.pointing_game [--scenes 300] [--seed 1000000]

For every correct detection (score >= 0.7, same label as a true object at IoU >= 0.5) the map's
maximum (at the layer's resolution, cell centre in image pixels) should fall inside the
detection's own box: the map explains this detection, not another.
"""
from __future__ import annotations

import argparse

import numpy as np


def hit(heatmap: np.ndarray, box, width: int, height: int) -> bool:
    rows, cols = heatmap.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x, y = (c + 0.5) * width / cols, (r + 0.5) * height / rows
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--layer", default=None, help="module name (default: the Grad-CAM default layer)")
    args = parser.parse_args()
    from app.cli import _quiet
    _quiet()
    from core.detection import above, detect
    from core.gradcam import compute_cams
    from core.metrics import box_iou
    from core.model import load_model
    from core.scenes import make_scene

    loaded = load_model(args.model)
    hits = {"gradcam": 0, "gradcam++": 0}
    count = 0
    for seed in range(args.seed, args.seed + args.scenes):
        image, truth = make_scene(seed)
        pixels = loaded.pixel_values(image)
        for det in above(detect(loaded, image), 0.7):
            same = [o["box"] for o in truth if o["label"] == det["label"]]
            if not same or box_iou([det["box"]], same).max() < 0.5:
                continue
            count += 1
            maps = compute_cams(loaded, pixels, det["index"], {"layer": args.layer, "target": "class"})
            for name, explanation in maps.items():
                hits[name] += hit(explanation.heatmap, det["box"], image.width, image.height)
    print(f"{args.scenes} scenes, {count} correct detections at score >= 0.7")
    for name, n in hits.items():
        print(f"pointing game {name}: {n}/{count} = {n / max(count, 1):.3f} of maxima inside the detection's box")


if __name__ == "__main__":
    main()

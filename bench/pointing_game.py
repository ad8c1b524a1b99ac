"""Pointing game of Grad-CAM / Grad-CAM++ on the demo model over held-out scenes, layer by layer.

  python -m bench.pointing_game [--scenes 300] [--seed 1000000] [--layer NAME|all]

For every correct detection (score >= 0.7, same label as a true object at IoU >= 0.5) the map's
maximum (at the layer's resolution, cell centre in image pixels) should fall inside the
detection's own box: the map explains this detection, not another. Two references from the same
backward show whether the layer's gradients themselves know where the detection is: "|gradient|"
(sum over channels of |dY/dA|) and "gradient x activation" (ReLU of the channel sum of
dY/dA * A, i.e. Grad-CAM without averaging the gradients over the map).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def hit(heatmap: np.ndarray, box, width: int, height: int) -> bool:
    rows, cols = heatmap.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x, y = (c + 0.5) * width / cols, (r + 0.5) * height / rows
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def maps(loaded, pixels, query: int, layer: str) -> dict[str, np.ndarray]:
    """Grad-CAM, Grad-CAM++ and the two gradient references of one detection at `layer`."""
    from core.methods.gradcam import _activation, cam_maps
    from core.methods.targets import predicted_class, target_score
    module = dict(loaded.model.named_modules())[layer]
    with torch.enable_grad(), _activation(module) as captured:
        outputs = loaded.model(pixel_values=pixels)
        score = target_score(outputs, query, "class", predicted_class(outputs.logits, query))[0]
        (gradients,) = torch.autograd.grad(score, captured[0])
    a, g = captured[0][0].detach(), gradients[0]
    gradcam, gradcampp = cam_maps(a, g)
    return {"gradcam": gradcam.numpy(), "gradcam++": gradcampp.numpy(), "|gradient|": g.abs().sum(0).numpy(),
            "gradient x activation": torch.relu((g * a).sum(0)).numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--layer", default=None, help="module name, or 'all' (default: the Grad-CAM default layer)")
    args = parser.parse_args()
    from app.cli import _quiet
    _quiet()
    from core.models.detection import above, detect
    from core.methods.gradcam import default_layer, layer_choices
    from core.evaluation.metrics import box_iou
    from core.models.loading import load_model
    from core.demo.scenes import make_scene

    loaded = load_model(args.model)
    labels = dict(layer_choices(loaded.model))
    layers = list(labels) if args.layer == "all" else [args.layer or default_layer(loaded.model)]
    hits = {layer: {} for layer in layers}
    count = 0
    for seed in range(args.seed, args.seed + args.scenes):
        image, truth = make_scene(seed)
        pixels = loaded.pixel_values(image)
        for det in above(detect(loaded, image), 0.7):
            same = [o["box"] for o in truth if o["label"] == det["label"]]
            if not same or box_iou([det["box"]], same).max() < 0.5:
                continue
            count += 1
            for layer in layers:
                for name, heatmap in maps(loaded, pixels, det["index"], layer).items():
                    hits[layer][name] = hits[layer].get(name, 0) + hit(heatmap, det["box"], image.width, image.height)
    print(f"{args.scenes} scenes, {count} correct detections at score >= 0.7; "
          f"share of maps whose maximum is inside the detection's box:")
    for layer in layers:
        print(f"{labels.get(layer, layer)} ({layer}): "
              + ", ".join(f"{name} {n / max(count, 1):.3f}" for name, n in hits[layer].items()))


if __name__ == "__main__":
    main()

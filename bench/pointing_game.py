"""Pointing game of every CAM variant and ODAM on the demo model over held-out scenes, per layer.

  python -m bench.pointing_game [--scenes 300] [--seed 1000000] [--model demo] [--odam-timing]

For every correct detection (score >= 0.7, same label as a true object at IoU >= 0.5) and every
layer of core.methods.gradcam.layer_choices, each map of core.methods.gradcam.VARIANTS (class
logit as target) and ODAM's combined map is scored two ways:
- pointing game: the map's maximum (at the layer's resolution, cell centre in image pixels) lies
  inside the detection's own box: the map explains this detection, not another;
- energy pointing: the share of the map's positive mass (resized to the image) inside that box.
Both also on ODAM's stricter subset: detections with IoU > 0.9 to a true box of the same class.
All layers come from one forward and one batched backward of the five targets per detection.
Then the line to paste: each variant at its best layer (by pointing game).
--odam-timing: compute_odam with is_grads_batched vs five retain_graph backwards (interleaved runs).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def hit(heatmap: np.ndarray, box, width: int, height: int) -> bool:
    rows, cols = heatmap.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x, y = (c + 0.5) * width / cols, (r + 0.5) * height / rows
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def all_maps(loaded, pixels, query: int, layers: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """layer -> method -> map, for every CAM variant and ODAM, from one forward and one backward."""
    from core.methods.gradcam import as_map, cam_maps, forward_and_capture
    from core.methods.odam import combine, target_gradients, target_maps
    from core.methods.targets import TARGETS, predicted_class, target_score
    with torch.enable_grad():
        outputs, captured, grid = forward_and_capture(loaded.model, pixels, layers)
        cls = predicted_class(outputs.logits, query, loaded)
        scores = torch.stack([target_score(outputs, query, t, cls)[0] for t in TARGETS])
        grads = target_gradients(scores, [captured[n] for n in layers], batched=True)
    result = {}
    for name, g in zip(layers, grads):
        a = as_map(captured[name][0].detach(), grid)
        g = torch.stack([as_map(gt[0], grid) for gt in g])
        maps = {m: v.numpy() for m, v in cam_maps(a, g[0]).items()}
        maps["odam"] = combine(target_maps(a, g)).numpy()
        result[name] = maps
    return result


def odam_timing(loaded, seed: int, scenes: int = 10, repeat: int = 10) -> dict[str, float]:
    """Median and minimum seconds of compute_odam with one batched backward vs five retain_graph
    backwards: two detections of each of `scenes` scenes, `repeat` times, the two ways interleaved."""
    from core.demo.scenes import make_scene
    from core.methods.odam import compute_odam
    from core.models.detection import above, detect
    runs = {True: [], False: []}
    for s in range(seed, seed + scenes):
        image, _ = make_scene(s)
        pixels = loaded.pixel_values(image)
        for det in above(detect(loaded, image), 0.7)[:2]:
            for rep in range(repeat):
                for batched in (True, False) if rep % 2 else (False, True):
                    start = time.perf_counter()
                    compute_odam(loaded, pixels, det["index"], {}, batched=batched)
                    runs[batched].append(time.perf_counter() - start)
    return {f"{name} {stat.__name__}": stat(runs[b]) for name, b in (("is_grads_batched", True),
                                                                      ("retain_graph loop", False))
            for stat in (statistics.median, min)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--odam-timing", action="store_true")
    args = parser.parse_args()
    from app.cli import _quiet
    _quiet()
    from core.demo.scenes import make_scene
    from core.evaluation.faithfulness import energy_pointing_game
    from core.evaluation.metrics import box_iou
    from core.methods.gradcam import layer_choices
    from core.models.detection import above, detect
    from core.models.loading import load_model

    loaded = load_model(args.model)
    labels = dict(layer_choices(loaded.model))
    layers = list(labels)
    # layer -> method -> subset -> [hits], [energies]
    hits, energy, count = {}, {}, {"all": 0, "iou>0.9": 0}
    for seed in range(args.seed, args.seed + args.scenes):
        image, truth = make_scene(seed)
        pixels = loaded.pixel_values(image)
        for det in above(detect(loaded, image), 0.7):
            same = [o["box"] for o in truth if o["label"] == det["label"]]
            iou = box_iou([det["box"]], same).max() if same else 0.0
            if iou < 0.5:
                continue
            subsets = ["all"] + (["iou>0.9"] if iou > 0.9 else [])
            for s in subsets:
                count[s] += 1
            for layer, maps in all_maps(loaded, pixels, det["index"], layers).items():
                for method, m in maps.items():
                    h = hit(m, det["box"], image.width, image.height)
                    e = energy_pointing_game(m, det["box"], image.size)
                    for s in subsets:
                        hits.setdefault((layer, method, s), []).append(h)
                        energy.setdefault((layer, method, s), []).append(e)
    methods = list(next(iter(all_maps(loaded, pixels, det["index"], layers[:1]).values())))
    print(f"{loaded.name}: {args.scenes} scenes from seed {args.seed}, {count['all']} correct detections at "
          f"score >= 0.7 ({count['iou>0.9']} with IoU > 0.9 to a true box of their class); "
          f"pointing game / energy pointing (all | IoU > 0.9):")
    best = {}
    for layer in layers:
        print(f"{labels[layer]} ({layer}):")
        for method in methods:
            cells = []
            for s in ("all", "iou>0.9"):
                pg, ep = np.mean(hits[layer, method, s]), np.nanmean(energy[layer, method, s])
                cells.append(f"{pg:.3f} / {ep:.3f}")
            print(f"    {method:<20} {cells[0]}  |  {cells[1]}")
            pg = np.mean(hits[layer, method, "all"])
            if method not in best or pg > best[method][1]:
                best[method] = (layer, pg)
    print("best layer per method (pointing game, all):")
    for method, (layer, pg) in best.items():
        print(f"    {method:<20} {labels[layer]:<18} {pg:.3f} / {np.nanmean(energy[layer, method, 'all']):.3f}  |  "
              f"{np.mean(hits[layer, method, 'iou>0.9']):.3f} / {np.nanmean(energy[layer, method, 'iou>0.9']):.3f}")
    if args.odam_timing:
        print("compute_odam seconds:", {k: round(v, 5) for k, v in odam_timing(loaded, args.seed).items()})


if __name__ == "__main__":
    main()

"""Faithfulness of every explanation method on held-out demo scenes, and the cost of one comparison.

    .venv/bin/python -m bench.compare [--model demo] [--scenes 200] [--seed 1000000] [--threads N] [--json]

Every correctly detected object of every held-out scene (core.demo.scenes.make_scene, seeds >= 1_000_000,
never seen in training) is compared with core.evaluation.compare.compare: a detection with score >= 0.7 whose
label matches a true box at IoU >= 0.5 (the best such box is its truth). Per method it prints the
mean deletion AUC (lower is better), insertion AUC (higher), energy pointing game against the true
box (share of the map's positive mass inside it) and the pointing-game hit rate (the map's maximum
inside the true box). Then the wall time of one full comparison (every map and its scores, nothing
cached) against one no-grad forward of the same image, and its breakdown by stage: "passes" (the
maps' forwards and backwards: one joint pass for the CAM family, attention and relevance, one for
ODAM), "IG" (Integrated Gradients' path) and "faithfulness" (the deletion / insertion curves of
every map, batched together); medians over all compared detections.
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch

from core.evaluation.compare import METHODS, compare, default_methods
from core.models.detection import detect
from core.evaluation.faithfulness import resize_map
from core.evaluation.metrics import box_iou
from core.models.loading import load_model
from core.demo.scenes import make_scene
from bench.timing import median_seconds


def correct_detections(detections: list[dict], truth: list[dict], score: float, iou: float) -> list[tuple]:
    """(detection, true box) for each detection >= score that matches a true box of its label at >= iou."""
    found = []
    for det in detections:
        same = [t["box"] for t in truth if t["label"] == det["label"]]
        if det["score"] < score or not same:
            continue
        ious = box_iou(np.array([det["box"]]), np.array(same))[0]
        if ious.max() >= iou:
            found.append((det, same[int(ious.argmax())]))
    return found


def pointing_hit(heatmap, box, size: tuple[int, int]) -> bool:
    """Whether the map's maximum (resized to the image) lies in `box` (pixel centres, as the energy game)."""
    width, height = size
    m = resize_map(heatmap, height, width)
    y, x = divmod(int(torch.argmax(m)), width)
    return box[0] <= x + 0.5 < box[2] and box[1] <= y + 0.5 < box[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1_000_000, help="first held-out seed")
    parser.add_argument("--score", type=float, default=0.7, help="detections at least this confident")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU with a true box of the same label")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    methods = default_methods()
    scores = {m: {"deletion_auc": [], "insertion_auc": [], "pointing_game_gt": [], "hit": []} for m in METHODS}
    objects, seconds, first = 0, [], None
    stages = {"passes": [], "IG": [], "faithfulness": []}
    for seed in range(args.seed, args.seed + args.scenes):
        image, truth = make_scene(seed)
        pixels = loaded.pixel_values(image)
        for det, box in correct_detections(detect(loaded, image), truth, args.score, args.iou):
            result = compare(loaded, pixels, det["index"], methods, gt_box=box, image_size=image.size)
            seconds.append(result["seconds"]["total"])
            explain = result["seconds"]["explain"]
            stages["passes"].append(sum(v for n, v in explain.items() if n != "ig"))
            stages["IG"].append(explain.get("ig", 0.0))
            stages["faithfulness"].append(sum(result["seconds"]["faithfulness"].values()))
            first = first or (pixels, det["index"], box, image.size)
            objects += 1
            for name, m in result["methods"].items():
                for key in ("deletion_auc", "insertion_auc", "pointing_game_gt"):
                    scores[name][key].append(m["scores"][key])
                scores[name]["hit"].append(pointing_hit(m["heatmap"], box, image.size))
    report = {"model": loaded.name, "scenes": args.scenes, "objects": objects, "threads": torch.get_num_threads(),
              "ig": methods["ig"], "methods": {
                  name: {"deletion_auc": float(np.nanmean(s["deletion_auc"])) if objects else None,
                         "insertion_auc": float(np.nanmean(s["insertion_auc"])) if objects else None,
                         "pointing_game_gt": float(np.nanmean(s["pointing_game_gt"])) if objects else None,
                         "pointing_hit_rate": float(np.mean(s["hit"])) if objects else None}
                  for name, s in scores.items()}}
    if first:
        pixels = first[0]
        with torch.no_grad():
            forward = median_seconds(lambda: loaded.model(pixel_values=pixels), 5)
        report.update(compare_seconds=statistics.median(seconds), forward_seconds=forward,
                      compare_over_forward=statistics.median(seconds) / forward,
                      stages_over_forward={k: statistics.median(v) / forward for k, v in stages.items()},
                      input_size=list(pixels.shape[-2:]))
    if args.json:
        print(json.dumps(report))
        return
    print(f"{loaded.name}: {objects} correctly detected objects in {args.scenes} held-out scenes "
          f"(score >= {args.score}, IoU >= {args.iou}); IG {methods['ig']}; {report['threads']} threads")
    print(f"{'method':<20} {'deletion AUC':>13} {'insertion AUC':>14} {'pointing (truth)':>17} {'hit rate':>9}")
    for name, s in report["methods"].items():
        cells = [f"{s[k]:.3f}" if s[k] is not None else "-" for k in
                 ("deletion_auc", "insertion_auc", "pointing_game_gt", "pointing_hit_rate")]
        print(f"{name:<20} {cells[0]:>13} {cells[1]:>14} {cells[2]:>17} {cells[3]:>9}")
    if first:
        print(f"one comparison {report['compare_seconds']:.2f} s (median) = {report['compare_over_forward']:.0f}x "
              f"one no-grad forward ({1000 * report['forward_seconds']:.1f} ms at {report['input_size']}); by stage: "
              + ", ".join(f"{k} {v:.0f}x" for k, v in report["stages_over_forward"].items()))


if __name__ == "__main__":
    main()

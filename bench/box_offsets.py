"""Where a demo model places its boxes against the truth: the median offset of each box edge (x0, y0,
x1, y1, pixels of the 256 px scene) over matched detections of training scenes, and the held-out
mAP as it is and with the boxes shifted back by those offsets (fitted on training scenes only).

    .venv/bin/python -m bench.box_offsets [--model models/demo-detr] [--scenes 500]
        [--train-seed 600000] [--seed 1000000]

A systematic offset the loss did not remove on its own training scenes says the model the loss saw
is not the model that is served (the model card's "What the last stage fixed").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import DetrForObjectDetection

from core.demo.scenes import CLASSES, SCENE_SIZES, SCENE_VERSION, make_scene
from core.demo.train import scene_batch
from core.evaluation.metrics import COCO_IOUS, box_iou, mean_average_precision
from core.models.detection import postprocess


def detections(model, seed: int, count: int, side: int, batch: int = 50):
    size = SCENE_SIZES[SCENE_VERSION]
    preds, truths = [], []
    with torch.inference_mode():
        for start in range(0, count, batch):
            seeds = range(seed + start, seed + min(count, start + batch))
            out = model(pixel_values=scene_batch(seeds, "cpu", SCENE_VERSION, side)[0])
            for i, s in enumerate(seeds):
                preds.append(postprocess(out.logits[i], out.pred_boxes[i], (size, size), model.config.id2label))
                truths.append(make_scene(s, version=SCENE_VERSION)[1])
    return preds, truths


def median_offsets(preds, truths, score: float = 0.5) -> np.ndarray:
    """Median (detection - truth) per edge over each true object's best same-class match at IoU >= 0.5."""
    rows = []
    for dets, objs in zip(preds, truths):
        for o in objs:
            boxes = [d["box"] for d in dets if d["label"] == o["label"] and d["score"] >= score]
            if boxes:
                ious = box_iou([o["box"]], boxes)[0]
                if ious.max() >= 0.5:
                    rows.append(np.subtract(boxes[int(ious.argmax())], o["box"]))
    return np.median(np.array(rows), axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/demo-detr")
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--train-seed", type=int, default=600_000, help="first training scene to fit offsets on")
    parser.add_argument("--seed", type=int, default=1_000_000, help="first held-out scene")
    args = parser.parse_args()
    model = DetrForObjectDetection.from_pretrained(args.model).eval()
    side = json.loads((Path(args.model) / "preprocessor_config.json").read_text())["size"]["shortest_edge"]
    offsets = median_offsets(*detections(model, args.train_seed, args.scenes, side))
    print(f"{args.model}: median box-edge offsets (x0, y0, x1, y1 px) on {args.scenes} training scenes "
          f"from seed {args.train_seed}: {np.round(offsets, 2).tolist()}")
    preds, truths = detections(model, args.seed, args.scenes, side)
    shifted = [[{**d, "box": list(np.subtract(d["box"], offsets))} for d in dets] for dets in preds]
    for name, p in (("as it is", preds), ("boxes shifted back", shifted)):
        print(f"  {args.scenes} held-out scenes from {args.seed}, {name}: mAP@0.5 "
              f"{mean_average_precision(p, truths, CLASSES, (0.5,)):.4f}, mAP@[.5:.95] "
              f"{mean_average_precision(p, truths, CLASSES, COCO_IOUS):.4f}")


if __name__ == "__main__":
    main()

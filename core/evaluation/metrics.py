"""Detection metrics: box IoU and COCO-style mean average precision."""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N, 4] and [M, 4] boxes given as x0, y0, x1, y1."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def average_precision(predictions: list[list[dict]], truths: list[list[dict]], label: str, iou: float) -> float:
    """AP of one class at one IoU threshold, COCO's 101-point interpolation.

    predictions[i] / truths[i] are the detections / true objects of image i, each a dict with
    "label", "box" and (predictions only) "score". Greedy matching by descending score.
    """
    scored, n_true = [], 0
    for preds, objs in zip(predictions, truths):
        gt = np.array([o["box"] for o in objs if o["label"] == label]).reshape(-1, 4)
        n_true += len(gt)
        mine = sorted((p for p in preds if p["label"] == label), key=lambda p: -p["score"])
        taken = np.zeros(len(gt), dtype=bool)
        ious = box_iou(np.array([p["box"] for p in mine]).reshape(-1, 4), gt)
        for k, p in enumerate(mine):
            j = int(np.argmax(np.where(taken, -1, ious[k]))) if len(gt) else -1
            hit = j >= 0 and not taken[j] and ious[k, j] >= iou
            if hit:
                taken[j] = True
            scored.append((p["score"], hit))
    if n_true == 0:
        return float("nan")
    scored.sort(key=lambda t: -t[0])
    hits = np.array([h for _, h in scored], dtype=np.float64)
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    recall = tp / n_true
    precision = tp / np.maximum(tp + fp, 1e-12)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def mean_average_precision(predictions, truths, labels, ious=(0.5,)) -> float:
    """Mean of AP over classes present in the truth and over the given IoU thresholds."""
    aps = [average_precision(predictions, truths, c, t) for c in labels for t in ious]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


COCO_IOUS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def duplicates_and_false_positives(predictions: list[list[dict]], truths: list[list[dict]], threshold: float,
                                   iou: float = 0.5) -> dict:
    """What a person sees at a score threshold: per image, the detections at >= threshold in
    descending score. A duplicate has IoU > `iou` with a higher-scored detection of its class; the
    others are matched greedily to unmatched true objects of their class at IoU >= `iou`, and those
    left unmatched are false positives. Counts, and both in % of the true objects."""
    dups = false = n_true = 0
    for preds, objs in zip(predictions, truths):
        n_true += len(objs)
        shown = sorted((p for p in preds if p["score"] >= threshold), key=lambda p: -p["score"])
        kept: list[dict] = []
        for p in shown:
            same = [k["box"] for k in kept if k["label"] == p["label"]]
            if same and box_iou([p["box"]], same).max() > iou:
                dups += 1
            else:
                kept.append(p)
        taken = [False] * len(objs)
        for p in kept:
            ious = box_iou([p["box"]], [o["box"] for o in objs])[0] if objs else np.zeros(0)
            free = [j for j, o in enumerate(objs) if not taken[j] and o["label"] == p["label"] and ious[j] >= iou]
            if free:
                taken[max(free, key=lambda j: ious[j])] = True
            else:
                false += 1
    pct = (lambda n: round(100 * n / n_true, 2)) if n_true else (lambda n: float("nan"))
    return {"true_objects": n_true, "duplicates": dups, "false_positives": false,
            "duplicates_pct": pct(dups), "false_positives_pct": pct(false)}

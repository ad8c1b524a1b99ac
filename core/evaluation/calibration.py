"""Calibration of detection confidences: D-ECE, LA-ECE, OCE and LRP, a reliability diagram, and
all of them as a function of the confidence threshold.

The metrics are those of the uq-detr package (Park et al., MIT licence), computed here on arrays
prepared once per dataset: uq-detr rebuilds IoU matrices and matchings image by image for every
threshold, about 0.3 s per threshold on 500 demo images (19 thresholds x plain and MC = 11 s, twice
the 500 forwards themselves); this takes milliseconds per threshold. tests/test_calibration.py
checks that both give the same numbers on random detections at several thresholds.

Conventions (they change the numbers):
- The detections evaluated at threshold t are the query slots whose confidence is > t (uq-detr's
  `select`), each with its box, label and confidence. Plain: confidence = DETR's score (softmax
  incl. no-object, max over real classes). MC-Dropout: the same boxes and labels, confidence = the
  mean over the T samples of the probability of that label at that slot (`mc_dropout`'s
  `score_mean`), so only the confidence differs between the two.
- True positive: COCO-style greedy matching, detections by descending confidence, each takes the
  unmatched true object of its class with the highest IoU >= 0.5 (uq-detr tp_criterion="greedy").
  A detection's match depends only on the more confident ones, so one matching over all slots
  serves every threshold.
- D-ECE (Kuppers et al. 2020): sum over bins of (bin size / N) |precision - mean confidence|, 25
  equal bins between the lowest and highest confidence evaluated (uq-detr's binning).
- LA-ECE (Oksuz et al. 2023): the same per predicted class, a true positive's accuracy being its
  IoU (0 for a false positive), averaged over the classes present.
- OCE (Park et al., TPAMI): per true object, the Brier score sum_c (onehot_c - p_c)^2 of the mean
  real-class distribution of the detections (any class) with IoU >= tau over it, 1 when there is
  none; averaged over objects, then over tau in {0.5, 0.75}.
- LRP (Oksuz et al. 2018): (FP + FN + sum over TPs of (1 - IoU) / (1 - 0.5)) / (TP + FP + FN).
- The reliability diagram has 10 equal bins on [0, 1] with the same true positives.
"""
from __future__ import annotations

import numpy as np

from core.evaluation.metrics import box_iou

IOU = 0.5
OCE_IOUS = (0.5, 0.75)
ECE_BINS = 25
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.05, 0.951, 0.05))
RELIABILITY_BINS = 10


def greedy_match(boxes, labels, conf, truth_boxes, truth_labels, iou: float = IOU,
                 ious: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(matched true-object index per detection or -1, its IoU or 0): COCO-style greedy matching.
    `ious` [N, M], if given, is box_iou(boxes, truth_boxes)."""
    boxes, truth_boxes = np.asarray(boxes, float).reshape(-1, 4), np.asarray(truth_boxes, float).reshape(-1, 4)
    labels, truth_labels = np.asarray(labels), np.asarray(truth_labels)
    matched, matched_iou = np.full(len(boxes), -1), np.zeros(len(boxes))
    if not len(boxes) or not len(truth_boxes):
        return matched, matched_iou
    ious = box_iou(boxes, truth_boxes) if ious is None else ious
    overlap = np.where(labels[:, None] == truth_labels[None, :], ious, 0.0)
    free = np.ones(len(truth_boxes), bool)
    candidates = np.flatnonzero(overlap.max(1) >= iou)  # only these can match: skip the rest
    for d in candidates[np.argsort(-np.asarray(conf)[candidates], kind="stable")]:
        row = np.where(free, overlap[d], -1.0)
        j = int(np.argmax(row))
        if row[j] >= iou:
            matched[d], matched_iou[d], free[j] = j, row[j], False
    return matched, matched_iou


def prepare(images: list[dict], key: str = "conf") -> dict:
    """Every slot of every image, matched once, for `errors` at any threshold.

    images: one dict per image, arrays over its slots: "boxes" [Q, 4] xyxy pixels, "labels" [Q]
    label ids, "conf" [Q] plain confidence, "probs" [Q, C] real-class probabilities, and for
    key="mc_conf" also "mc_conf" [Q], "mc_probs" [Q, C]; "truth_boxes" [M, 4], "truth_labels" [M].
    """
    probs_key = "probs" if key == "conf" else "mc_probs"
    conf, labels, tp_iou, probs, truth_labels = [], [], [], [], []
    pair_obj, pair_det, pair_iou = [], [], []
    n_det = n_obj = 0
    for im in images:
        ious = box_iou(im["boxes"], im["truth_boxes"])  # [Q, M]
        matched, m_iou = greedy_match(im["boxes"], im["labels"], im[key], im["truth_boxes"], im["truth_labels"],
                                      ious=ious)
        conf.append(im[key])
        labels.append(im["labels"])
        tp_iou.append(np.where(matched >= 0, m_iou, 0.0))
        probs.append(im[probs_key])
        truth_labels.append(im["truth_labels"])
        d, o = np.nonzero(ious >= min(OCE_IOUS))
        pair_det.append(d + n_det)
        pair_obj.append(o + n_obj)
        pair_iou.append(ious[d, o])
        n_det += len(im[key])
        n_obj += len(im["truth_labels"])
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    tp_iou = cat(tp_iou, np.float64)
    width = max((p.shape[1] for p in probs if p.ndim == 2), default=1)
    return {"conf": cat(conf, np.float64), "labels": cat(labels, np.int64), "tp": tp_iou > 0, "tp_iou": tp_iou,
            "probs": np.concatenate(probs).astype(np.float64) if probs else np.zeros((0, width)),
            "truth_labels": cat(truth_labels, np.int64), "pair_obj": cat(pair_obj, np.int64),
            "pair_det": cat(pair_det, np.int64), "pair_iou": cat(pair_iou, np.float64)}


def binned_ece(conf, accuracy, bins: int = ECE_BINS) -> float:
    """sum_b |b| / N * |mean accuracy_b - mean confidence_b|, `bins` equal bins from min to max
    confidence (a value on an edge goes to the bin below it, as np.digitize(right=True))."""
    conf, accuracy = np.asarray(conf, float), np.asarray(accuracy, float)
    if not len(conf):
        return 0.0
    edges = np.linspace(conf.min(), conf.max(), bins + 1)
    index = np.clip(np.digitize(conf, edges, right=True), 1, bins) - 1
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, accuracy, bins) - np.bincount(index, conf, bins))  # sums per bin
    return float(gap.sum() / len(conf))  # = sum_b |b|/N * |mean acc - mean conf|, as count_b cancels


def _oce(p: dict, keep: np.ndarray) -> float:
    n_obj = len(p["truth_labels"])
    if not n_obj:
        return 1.0
    width = p["probs"].shape[1]
    onehot = np.zeros((n_obj, width))
    onehot[np.arange(n_obj), p["truth_labels"]] = 1.0
    scores = []
    for tau in OCE_IOUS:
        m = keep[p["pair_det"]] & (p["pair_iou"] >= tau)
        obj, det = p["pair_obj"][m], p["pair_det"][m]
        count = np.bincount(obj, minlength=n_obj)
        sums = np.zeros((n_obj, width))
        np.add.at(sums, obj, p["probs"][det])
        mean = sums / np.maximum(count, 1)[:, None]
        brier = np.where(count > 0, ((onehot - mean) ** 2).sum(1), 1.0)
        scores.append(brier.mean())
    return float(np.mean(scores))


def errors(p: dict, threshold: float) -> dict:
    """{"threshold", "detections", "d_ece", "la_ece", "oce", "lrp"} of the slots with confidence >
    threshold (p from `prepare`); the ECEs are None when no slot is above it."""
    keep = p["conf"] > threshold
    conf, tp, tp_iou, labels = p["conf"][keep], p["tp"][keep], p["tp_iou"][keep], p["labels"][keep]
    n, n_tp, n_obj = int(keep.sum()), int(tp.sum()), len(p["truth_labels"])
    d_ece = binned_ece(conf, tp) if n else None
    la_ece = float(np.mean([binned_ece(conf[labels == c], tp_iou[labels == c]) for c in np.unique(labels)])) \
        if n else None
    denom = n + n_obj - n_tp  # TP + FP + FN
    lrp = float(((n - n_tp) + (n_obj - n_tp) + ((1 - tp_iou[tp]) / (1 - IOU)).sum()) / denom) if denom else 0.0
    return {"threshold": threshold, "detections": n, "d_ece": d_ece, "la_ece": la_ece, "oce": _oce(p, keep),
            "lrp": lrp}


def by_threshold(p: dict, thresholds=THRESHOLDS) -> dict:
    """{"thresholds", "d_ece", "la_ece", "oce", "lrp", "detections"}: lists over the thresholds."""
    rows = [errors(p, t) for t in thresholds]
    return {"thresholds": list(thresholds),
            **{k: [r[k] for r in rows] for k in ("d_ece", "la_ece", "oce", "lrp", "detections")}}


def reliability(conf, tp, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Reliability diagram: per equal-width confidence bin on [0, 1] (the top bin includes 1),
    {"low", "high", "count", "confidence" (mean), "precision" (share of true positives)};
    confidence and precision are None in an empty bin."""
    conf, tp = np.asarray(conf, float), np.asarray(tp, float)
    index = np.clip((conf * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = index == b
        n = int(sel.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "count": n,
                    "confidence": float(conf[sel].mean()) if n else None,
                    "precision": float(tp[sel].mean()) if n else None})
    return out


def calibration(images: list[dict], threshold: float, key: str = "conf") -> dict:
    """`errors` at the threshold, its reliability diagram and `by_threshold`, for one confidence."""
    p = prepare(images, key)
    keep = p["conf"] > threshold
    return {**errors(p, threshold), "reliability": reliability(p["conf"][keep], p["tp"][keep]),
            "by_threshold": by_threshold(p)}

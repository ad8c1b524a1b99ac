"""How faithful a saliency map is to the model: deletion / insertion AUC and the energy pointing game.

Choices (documented here because they change the numbers):
- The map is resized (bilinear) to the image; pixels are ranked by value, ties in raster order.
- Step k of `steps` perturbs the round(k * n / steps) top-ranked pixels: steps + 1 points.
  Deletion replaces them by the baseline, insertion starts from the baseline and puts them back.
- Baseline: "blur" (default: a Gaussian blur, sigma = max(H, W) / 40, so removed pixels carry
  no sharp evidence but stay in-distribution), "mean" (the image's mean colour) or "black".
- Curves are divided by the score of the unperturbed image, so AUC is in units of that score
  (deletion: lower is better; insertion: higher is better). AUC = trapezoid rule over [0, 1].
- The score tracked is the detection's confidence (softmax), two ways: "slot" = probability of
  the original class at the original query slot; "matched" = best confidence among queries
  predicting the original class whose box has IoU > 0.5 with the original box (0 when none),
  since DETR may hand an object to another slot under perturbation. Both are reported.
- Energy pointing game: share of the map's positive mass at pixels whose centre is in the box.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.methods.baselines import make_baseline
from core.methods.explanation import Progress
from core.evaluation.metrics import box_iou
from core.methods.targets import predicted_class

STEPS = 20
IOU = 0.5
BASELINES = ("blur", "mean", "black")


def resize_map(heatmap, height: int, width: int) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))
    if m.shape == (height, width):
        return m
    return F.interpolate(m[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def pixel_ranks(heatmap, height: int, width: int) -> torch.Tensor:
    """[H, W] rank of each pixel, 0 = most attributed."""
    order = torch.argsort(-resize_map(heatmap, height, width).flatten(), stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel())
    return ranks.reshape(height, width)


def perturbation_curves(image: torch.Tensor, baseline: torch.Tensor, heatmap, score_fn: Callable,
                        steps: int = STEPS, batch_size: int = 8, progress: Progress | None = None) -> dict:
    """Deletion and insertion curves of `score_fn` ([B, 3, H, W] -> [B] or [B, K] scores).

    image, baseline: [1, 3, H, W]. Returns {"deletion": [steps + 1, ...], "insertion": ...} arrays.
    All 2 * (steps + 1) images go through `score_fn` in batches of `batch_size`.
    """
    ranks = pixel_ranks(heatmap, *image.shape[-2:]).to(image.device)
    counts = [round(k * ranks.numel() / steps) for k in range(steps + 1)]
    jobs = [(mode, n) for mode in ("deletion", "insertion") for n in counts]
    scores = []
    for start in range(0, len(jobs), batch_size):
        batch = []
        for mode, n in jobs[start:start + batch_size]:
            top = ranks < n
            batch.append(torch.where(top, baseline[0], image[0]) if mode == "deletion"
                         else torch.where(top, image[0], baseline[0]))
        with torch.no_grad():
            scores.append(np.asarray(torch.as_tensor(score_fn(torch.stack(batch))).float().cpu()))
        if progress:
            progress(min(start + batch_size, len(jobs)), len(jobs))
    scores = np.concatenate(scores)
    return {"deletion": scores[:steps + 1], "insertion": scores[steps + 1:]}


def auc(curve, reference: float) -> float:
    """Area under curve / reference over x in [0, 1] (evenly spaced points); nan if reference <= 0."""
    curve = np.asarray(curve, dtype=np.float64)
    if not reference > 0:
        return float("nan")
    y = curve / reference
    return float((y[:-1] + y[1:]).sum() / 2 / (len(y) - 1))


def energy_pointing_game(heatmap, box, size: tuple[int, int]) -> float:
    """Share of the map's positive mass inside `box` (x0, y0, x1, y1 in pixels of an image of
    size (width, height)); the map is resized to that size. nan when the map has no positive mass."""
    width, height = size
    m = resize_map(heatmap, height, width).clamp(min=0).double()
    total = float(m.sum())
    if total <= 0:
        return float("nan")
    x0, y0, x1, y1 = box
    xs, ys = torch.arange(width) + 0.5, torch.arange(height) + 0.5
    inside = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    return float(m[inside].sum()) / total


def removal_baseline(loaded, pixel_values: torch.Tensor, kind: str = "blur") -> torch.Tensor:
    """The image that "removed" pixels take, in the model's normalised space (core/methods/baselines.py)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    sigma = max(pixel_values.shape[-2:]) / 40
    return make_baseline(kind, pixel_values, loaded.preprocess.mean, loaded.preprocess.std, sigma=sigma)


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.moveaxis(np.asarray(cxcywh, dtype=np.float64), -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def detection_scorer(loaded, query: int, class_index: int, box_xyxy: np.ndarray, iou: float = IOU) -> Callable:
    """score_fn for `perturbation_curves`: images -> [B, 2] = (slot, matched) confidences."""
    def score(images: torch.Tensor) -> np.ndarray:
        out = loaded.model(pixel_values=images)
        probs = out.logits.float().softmax(-1)[..., :-1]  # [B, Q, C]
        slot = probs[:, query, class_index].cpu().numpy()
        best, labels = (t.cpu().numpy() for t in probs.max(-1))
        boxes = _xyxy(out.pred_boxes.float().cpu().numpy())
        matched = [float(np.max(np.where((labels[b] == class_index) & (box_iou(boxes[b], box_xyxy)[:, 0] > iou),
                                         best[b], 0.0))) for b in range(len(best))]
        return np.stack([slot, np.array(matched)], -1)
    return score


def faithfulness(loaded, pixel_values: torch.Tensor, query: int, heatmap, steps: int = STEPS,
                 baseline: str = "blur", gt_box=None, image_size: tuple[int, int] | None = None,
                 batch_size: int = 8, progress: Progress | None = None) -> dict:
    """Deletion / insertion AUC ("slot" and "matched" scores) and energy pointing game of one map
    for detection `query`. `gt_box` (x0, y0, x1, y1), if given, is a true box in pixels of an image
    of size `image_size` (width, height; default the model input's) for a second pointing game."""
    H, W = pixel_values.shape[-2:]
    with torch.no_grad():
        out = loaded.model(pixel_values=pixel_values)
    class_index = predicted_class(out.logits, query)
    box = _xyxy(out.pred_boxes[0, query].float().cpu().numpy())
    scorer = detection_scorer(loaded, query, class_index, box[None])
    curves = perturbation_curves(pixel_values, removal_baseline(loaded, pixel_values, baseline), heatmap, scorer,
                                 steps, batch_size, progress)
    initial = curves["deletion"][0]
    result = {"steps": steps, "baseline": baseline, "class_index": class_index, "score": float(initial[0]),
              "curves": {mode: {"slot": c[:, 0].tolist(), "matched": c[:, 1].tolist()} for mode, c in curves.items()},
              "pointing_game": energy_pointing_game(heatmap, box * [W, H, W, H], (W, H))}
    for mode in ("deletion", "insertion"):
        result[f"{mode}_auc"] = {name: auc(curves[mode][:, k], initial[k])
                                 for k, name in enumerate(("slot", "matched"))}
    if gt_box is not None:
        result["pointing_game_gt"] = energy_pointing_game(heatmap, gt_box, image_size or (W, H))
    return result

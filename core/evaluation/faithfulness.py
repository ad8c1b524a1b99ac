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
from core.methods.explanation import Progress, Reporter, partial_of
from core.methods.integrated_gradients import resize
from core.evaluation.metrics import box_iou
from core.methods.targets import predicted_class
from core.models.detection import scores

STEPS = 20
# The curves' forwards may run at most at this short side (px; None: the model's input as it is). No
# cap by default: at 0.6x the input's size a trained 256 px model's deletion AUC moved by 0.55 (median
# of 12 scenes) and its pointing game by up to 0.31 (README "Real model on a 2-core CPU").
RESOLUTION = None
IOU = 0.5
BASELINES = ("blur", "mean", "black")
# scoring batches: 32 images of 128 px ran fastest per image on CPU (bench/compare.py); fewer for large
# inputs: two maps' curves of DETR-R50 at 480 x 640 took 30 s and peaked at 1.2 GiB RSS with 1 M pixels
# a batch, 39 s and 2.1 GiB with 4 M
BATCH, BATCH_PIXELS = 32, 1_000_000


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
    The curves' ends are the image and the baseline themselves (scored once each); the other
    2 * (steps - 1) images go through `score_fn` with them in batches of `batch_size`.
    """
    return perturbation_curves_many(image, baseline, {"map": heatmap}, score_fn, steps, batch_size, progress)["map"]


def perturbation_curves_many(image: torch.Tensor, baseline: torch.Tensor, heatmaps: dict, score_fn: Callable,
                             steps: int = STEPS, batch_size: int = 8, progress: Progress | None = None) -> dict:
    """`perturbation_curves` of several maps (name -> map) at once: name -> curves.

    Every curve starts or ends at the unperturbed image or at the baseline, the same for every map:
    those two are scored once; the maps' other images share batches (a comparison's forwards are
    ~90% of its cost, and batches of many images run several times faster per image on a CPU).
    Coarse to fine, for results as they come: with an even number of steps every map's even points
    go first (map by map), then the odd ones, so a Reporter's `partial` gets name -> curves of
    steps // 2 steps for each map as its coarse points complete (exactly the curves a run of
    steps // 2 gives), then the full curves. The final curves are the same either way.
    """
    H, W = image.shape[-2:]
    counts = [round(k * H * W / steps) for k in range(steps + 1)]  # pixels perturbed at each point
    ranks = {name: pixel_ranks(m, H, W).to(image.device) for name, m in heatmaps.items()}
    levels = [range(2, steps, 2), range(1, steps, 2)] if steps % 2 == 0 and steps >= 4 else [range(1, steps)]
    ends = [(None, "image", 0), (None, "baseline", 0)]
    jobs = ends + [(name, mode, k) for level in levels for name in heatmaps for k in level
                   for mode in ("deletion", "insertion")]

    def make(name, mode, k):
        if name is None:
            return image[0] if mode == "image" else baseline[0]
        top = ranks[name] < counts[k]
        top_value, rest = (baseline[0], image[0]) if mode == "deletion" else (image[0], baseline[0])
        return torch.where(top, top_value, rest)

    scored, partial, shown = {}, partial_of(progress), {}

    def points(name) -> list[int]:
        """The points of `name`'s finest complete level (with both ends); [] before the coarsest."""
        done = []
        for level in levels:
            if not all((name, mode, k) in scored for k in level for mode in ("deletion", "insertion")):
                break
            done += level
        return sorted({0, steps, *done}) if done or not levels[0] else []

    def curves(name, at: list[int]) -> dict:
        def score(mode, k):
            if k in (0, steps):
                return scored[(None, "image" if (k == 0) == (mode == "deletion") else "baseline", 0)]
            return scored[(name, mode, k)]
        return {mode: np.stack([score(mode, k) for k in at]) for mode in ("deletion", "insertion")}

    for start in range(0, len(jobs), batch_size):
        part = jobs[start:start + batch_size]
        batch = torch.stack([make(*job) for job in part])
        with torch.inference_mode():
            scored.update(zip(part, np.asarray(torch.as_tensor(score_fn(batch)).float().cpu())))
        if progress:
            progress(start + len(part), len(jobs))
        if partial and all(end in scored for end in ends):
            now = {name: points(name) for name in heatmaps}
            if any(len(p) > len(shown.get(name, [])) for name, p in now.items()):
                shown = {name: p for name, p in now.items() if p}
                partial({name: curves(name, p) for name, p in shown.items()})
    return {name: curves(name, list(range(steps + 1))) for name in heatmaps}


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
        # channels-last input: the backbone's convs run ~1.6x faster on CPU (bench/compare.py)
        out = loaded.model(pixel_values=images.contiguous(memory_format=torch.channels_last))
        probs = scores(out.logits, loaded.family.no_object)  # [B, Q, C]: the family's own confidences
        slot = probs[:, query, class_index].cpu().numpy()
        best, labels = (t.cpu().numpy() for t in probs.max(-1))
        boxes = _xyxy(out.pred_boxes.float().cpu().numpy())
        matched = [float(np.max(np.where((labels[b] == class_index) & (box_iou(boxes[b], box_xyxy)[:, 0] > iou),
                                         best[b], 0.0))) for b in range(len(best))]
        return np.stack([slot, np.array(matched)], -1)
    return score


def batch_size_for(pixel_values: torch.Tensor) -> int:
    """Images per no-grad scoring batch: BATCH at small inputs, fewer as pixels grow (memory)."""
    return max(1, min(BATCH, BATCH_PIXELS // (pixel_values.shape[-2] * pixel_values.shape[-1])))


def faithfulness(loaded, pixel_values: torch.Tensor, query: int, heatmap, steps: int = STEPS,
                 baseline: str = "blur", gt_box=None, image_size: tuple[int, int] | None = None,
                 batch_size: int | None = None, progress: Progress | None = None) -> dict:
    """Deletion / insertion AUC ("slot" and "matched" scores) and energy pointing game of one map
    for detection `query`. `gt_box` (x0, y0, x1, y1), if given, is a true box in pixels of an image
    of size `image_size` (width, height; default the model input's) for a second pointing game."""
    return faithfulness_many(loaded, pixel_values, query, {"map": heatmap}, steps, baseline, gt_box, image_size,
                             batch_size, progress)["map"]


def faithfulness_many(loaded, pixel_values: torch.Tensor, query: int, heatmaps: dict, steps: int = STEPS,
                      baseline: str = "blur", gt_box=None, image_size: tuple[int, int] | None = None,
                      batch_size: int | None = None, progress: Progress | None = None) -> dict:
    """`faithfulness` of several maps (name -> map) of one detection: name -> result; their
    perturbed images share batches (perturbation_curves_many). A Reporter's `partial` gets name ->
    result of the maps scored so far, as each map's coarse curves and then its full ones complete
    (a result's "steps" says which)."""
    image_size = image_size or tuple(pixel_values.shape[-1:-3:-1])  # (width, height) of the model input
    pixel_values = resize(pixel_values, RESOLUTION)
    H, W = pixel_values.shape[-2:]
    with torch.inference_mode():
        out = loaded.model(pixel_values=pixel_values)
    class_index = predicted_class(out.logits, query, loaded)
    box = _xyxy(out.pred_boxes[0, query].float().cpu().numpy())
    scorer = detection_scorer(loaded, query, class_index, box[None])

    def result_of(name: str, curves: dict) -> dict:
        heatmap = heatmaps[name]
        initial = curves["deletion"][0]
        result = {"steps": len(curves["deletion"]) - 1, "shape": [int(H), int(W)], "baseline": baseline,
                  "class_index": class_index,
                  "score": float(initial[0]),
                  "curves": {mode: {"slot": c[:, 0].tolist(), "matched": c[:, 1].tolist()}
                             for mode, c in curves.items()},
                  "pointing_game": energy_pointing_game(heatmap, box * [W, H, W, H], (W, H))}
        for mode in ("deletion", "insertion"):
            result[f"{mode}_auc"] = {kind: auc(curves[mode][:, k], initial[k])
                                     for k, kind in enumerate(("slot", "matched"))}
        if gt_box is not None:
            result["pointing_game_gt"] = energy_pointing_game(heatmap, gt_box, image_size)
        return result

    partial, done = partial_of(progress), {}
    if partial:  # each map's result when its coarse curves complete, and again with the full ones
        def scored(ready: dict) -> None:
            done.update({name: result_of(name, c) for name, c in ready.items()
                         if name not in done or done[name]["steps"] < len(c["deletion"]) - 1})
            partial(dict(done))
        progress = Reporter(progress, scored)
    all_curves = perturbation_curves_many(pixel_values, removal_baseline(loaded, pixel_values, baseline), heatmaps,
                                          scorer, steps, batch_size or batch_size_for(pixel_values), progress)
    return {name: result_of(name, curves) for name, curves in all_curves.items()}

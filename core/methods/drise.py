"""D-RISE (Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency Maps", CVPR 2021):
a map that reads nothing inside the model, only its outputs on randomly masked images.

Definitions (the choices that change the numbers):
- Masks: N binary grids of s x s cells, each cell kept with probability p, upsampled bilinearly
  to (s + 1) x cell size (cell = ceil(H / s), ceil(W / s)) and cropped to H x W at a random shift
  of up to one cell, as in RISE. All grids and shifts are drawn up front from the method's own
  torch.Generator seeded with `seed`, so a seed gives the same map at any batch size.
- Masked image = pixel_values x mask in the model's normalised space: a removed pixel becomes 0
  there, the training data's mean colour (neutral, where black would be a strong signal).
- Similarity of a masked image to the picked detection (target box b_t, class probabilities
  P_t over the real classes, both from the unmasked image): the maximum over the masked image's
  queries of IoU(box, b_t) x (1 - p(no-object)) x cosine(P, P_t), where P are the query's
  softmax probabilities (over classes incl. no-object) of the real classes. DETR has no
  objectness score: 1 - p(no-object) plays its part. Taking the best query, not the picked
  slot, follows the object when DETR hands it to another query under masking.
- Map = sum_i w_i M_i / (N p): the similarity-weighted sum of the masks divided by the expected
  mask sum (RISE's normalisation), so a value reads as the mean similarity of the masked images
  that kept that pixel. At the model-input resolution [H, W].
- Convergence: how much the map of the first N/2 masks already agrees with that of all N.
  info "convergence_r" (Pearson correlation: rises towards 1 as the map settles) and
  "convergence_rho" (Spearman rank correlation). Show r: where the true map is flat (most of the
  background) the pixel ranks are pure mask noise at any N, so rho stays near 1/sqrt(2) ~ 0.71
  however many masks are drawn (measured on the demo: rho 0.70 / 0.68 at N = 1000 / 4000 while
  r rose 0.73 -> 0.85).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core import params as P
from core.methods.explanation import Explanation, Progress

PARAMS = (
    P.Param("masks", "int", 1000, "Random masks N: each a forward pass of a masked image (no gradients). More masks "
            "give a more settled map; cost grows linearly.", label="Masks", min=100, max=8000),
    P.Param("grid", "int", 16, "Cells per side of each mask's grid s: smaller cells resolve smaller parts.",
            label="Mask grid (cells per side)", min=2, max=64),
    P.Param("keep", "float", 0.5, "Probability that a cell of a mask keeps the image.", label="Keep probability",
            min=0.01, max=0.99),
    P.SEED,
)
DEFAULTS = P.defaults(PARAMS)
# Masked images per batch, bounded by pixels (no-grad forwards: a few 800 px images at a time on CPU,
# the whole batch of small demo images)
PIXELS_PER_BATCH = 2_000_000
MAX_BATCH = 64


def _xyxy(cxcywh: torch.Tensor) -> torch.Tensor:
    cxcy, wh = cxcywh[..., :2], cxcywh[..., 2:]
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1)


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one xyxy box [4] with boxes [..., 4] -> [...]."""
    lt, rb = torch.maximum(boxes[..., :2], box[:2]), torch.minimum(boxes[..., 2:], box[2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (box[2:] - box[:2]).prod() + (boxes[..., 2:] - boxes[..., :2]).prod(-1) - inter
    return inter / union.clamp(min=1e-12)


def similarity(target_box: torch.Tensor, target_probs: torch.Tensor, boxes: torch.Tensor,
               logits: torch.Tensor) -> torch.Tensor:
    """D-RISE similarity of each image's detections to the target -> [B].

    target_box [4] normalised cxcywh; target_probs [C] real-class probabilities of the target;
    boxes [B, Q, 4] normalised cxcywh; logits [B, Q, C+1] (no-object last).
    """
    probs = logits.float().softmax(-1)
    iou = _iou(_xyxy(target_box.float()), _xyxy(boxes.float()))
    cosine = F.cosine_similarity(probs[..., :-1], target_probs.float().expand_as(probs[..., :-1]), dim=-1)
    return (iou * (1 - probs[..., -1]) * cosine).max(-1).values


def draw_masks(count: int, grid: int, keep: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(grids [N, s, s] float 0/1, shifts [N, 2] in [0, 1) of a cell: y, x), drawn in that order."""
    grids = (torch.rand(count, grid, grid, generator=generator) < keep).float()
    return grids, torch.rand(count, 2, generator=generator)


def upsample(grids: torch.Tensor, shifts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """RISE's smooth masks [n, H, W]: bilinear upsampling of the grids to (s + 1) cells, cropped at the shift."""
    s = grids.shape[-1]
    cell_h, cell_w = math.ceil(height / s), math.ceil(width / s)
    big = F.interpolate(grids[:, None], size=((s + 1) * cell_h, (s + 1) * cell_w), mode="bilinear",
                        align_corners=False)[:, 0]
    ys, xs = (shifts[:, 0] * cell_h).long(), (shifts[:, 1] * cell_w).long()
    return torch.stack([m[y:y + height, x:x + width] for m, y, x in zip(big, ys.tolist(), xs.tolist())])


def pearson(a, b) -> float:
    """Pearson correlation of two maps (nan when one is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps (nan when one is constant)."""
    from scipy.stats import spearmanr
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@torch.no_grad()
def compute_drise(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                  progress: Progress | None = None) -> dict[str, Explanation]:
    """D-RISE map of detection `query` -> {"drise": Explanation} (definitions: module docstring).

    params: masks N, grid s, keep p, seed; optional "batch_size" (masked images per forward;
    default: by pixels) does not change the map.
    """
    p = {**DEFAULTS, **params}
    count, grid, keep, seed = int(p["masks"]), int(p["grid"]), float(p["keep"]), int(p["seed"])
    model, device = loaded.model, pixel_values.device
    height, width = pixel_values.shape[-2:]
    batch = int(p.get("batch_size") or max(1, min(MAX_BATCH, PIXELS_PER_BATCH // (height * width))))

    out = model(pixel_values=pixel_values)
    target_probs_all = out.logits[0, query].float().softmax(-1)
    target_probs, target_box = target_probs_all[:-1], out.pred_boxes[0, query]
    class_index = int(target_probs.argmax())

    grids, shifts = draw_masks(count, grid, keep, torch.Generator().manual_seed(seed))
    half = count // 2
    sums = [torch.zeros(height, width, dtype=torch.float64, device=device) for _ in range(2)]
    weights = []
    # batches never straddle N/2, so the first half's map is a by-product
    starts = [(s, min(s + batch, end)) for lo, end in ((0, half), (half, count)) for s in range(lo, end, batch)]
    for lo, hi in starts:
        masks = upsample(grids[lo:hi].to(device), shifts[lo:hi], height, width)
        out = model(pixel_values=pixel_values * masks[:, None])
        w = similarity(target_box, target_probs, out.pred_boxes, out.logits)
        sums[lo >= half] += torch.einsum("n,nhw->hw", w.double(), masks.double())
        weights.append(w.cpu())
        if progress:
            progress(hi, count)
    full = ((sums[0] + sums[1]) / (count * keep)).float().cpu().numpy()
    first = (sums[0] / (max(half, 1) * keep)).float().cpu().numpy()
    weights = torch.cat(weights).numpy()
    info = {"masks": count, "grid": grid, "keep": keep, "seed": seed, "query": int(query),
            "class_index": class_index, "label": loaded.id2label.get(class_index, str(class_index)),
            "target_value": float(1 - target_probs_all[-1]),
            "convergence_r": pearson(first, full), "convergence_rho": spearman(first, full),
            "similarity_mean": float(weights.mean()), "similarity_max": float(weights.max()),
            "shape": [int(height), int(width)], "method": "drise"}
    return {"drise": Explanation(heatmap=full, info=info)}

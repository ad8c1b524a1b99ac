"""Detector outputs -> detections in original-image pixels, one per query slot."""
from __future__ import annotations

import torch
from PIL import Image


def scores(logits: torch.Tensor, no_object: bool = True) -> torch.Tensor:
    """[..., C(+1)] logits -> [..., C] per-class confidences.

    no_object (DETR): softmax over the classes including no-object, the no-object column dropped.
    Otherwise (Conditional/DAB/Deformable DETR, RT-DETR, D-FINE: focal-loss heads) each class's
    own sigmoid, as their `post_process_object_detection` does.
    """
    logits = logits.detach().float()
    return logits.softmax(-1)[..., :-1] if no_object else logits.sigmoid()


def postprocess(logits: torch.Tensor, pred_boxes: torch.Tensor, size: tuple[int, int], id2label: dict,
                threshold: float = 0.0, no_object: bool = True) -> list[dict]:
    """One image's [Q, C(+1)] logits and [Q, 4] normalised cxcywh boxes -> one detection per query.

    Score = the best real class's confidence (`scores`). For sigmoid heads transformers takes a top-k
    over (query, class) pairs, which can list one query twice under two labels; here each query slot
    keeps its best class, so "index" names one detection, and the threshold does the cutting.
    Boxes are x0, y0, x1, y1 in pixels of an image of size (width, height).
    """
    probs = scores(logits, no_object)
    best, labels = probs.max(-1)
    w, h = size
    cx, cy, bw, bh = pred_boxes.detach().float().unbind(-1)
    boxes = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
    best, labels, boxes = best.tolist(), labels.tolist(), boxes.tolist()  # one copy, not one per value
    return [
        {"index": q, "label": id2label[labels[q]], "score": round(best[q], 6),
         "box": [round(v, 2) for v in boxes[q]]}
        for q in range(len(best)) if best[q] >= threshold
    ]


def detect(loaded, image: Image.Image) -> list[dict]:
    """Every query's detection (no threshold: filtering is the caller's, and never re-runs the model)."""
    with torch.inference_mode():
        out = loaded.model(pixel_values=loaded.pixel_values(image))
    return postprocess(out.logits[0], out.pred_boxes[0], image.size, loaded.id2label,
                       no_object=loaded.family.no_object)


def above(detections: list[dict], threshold: float) -> list[dict]:
    return [d for d in detections if d["score"] >= threshold]


def option_label(det: dict) -> str:
    """How a detection is named everywhere: 'index: label (score)'."""
    return f"{det['index']}: {det['label']} ({det['score']:.2f})"

"""DETR outputs -> detections in original-image pixels."""
from __future__ import annotations

import torch
from PIL import Image


def postprocess(logits: torch.Tensor, pred_boxes: torch.Tensor, size: tuple[int, int], id2label: dict,
                threshold: float = 0.0) -> list[dict]:
    """One image's [Q, C+1] logits and [Q, 4] normalised cxcywh boxes -> detections.

    Score = softmax over classes including no-object, max over the real classes (DETR's own
    convention). Boxes are x0, y0, x1, y1 in pixels of an image of size (width, height).
    """
    probs = logits.detach().float().softmax(-1)[:, :-1]
    scores, labels = probs.max(-1)
    w, h = size
    cx, cy, bw, bh = pred_boxes.detach().float().unbind(-1)
    boxes = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
    scores, labels, boxes = scores.tolist(), labels.tolist(), boxes.tolist()  # one copy, not one per value
    return [
        {"index": q, "label": id2label[labels[q]], "score": round(scores[q], 6),
         "box": [round(v, 2) for v in boxes[q]]}
        for q in range(len(scores)) if scores[q] >= threshold
    ]


def detect(loaded, image: Image.Image) -> list[dict]:
    """Every query's detection (no threshold: filtering is the caller's, and never re-runs the model)."""
    with torch.inference_mode():
        out = loaded.model(pixel_values=loaded.pixel_values(image))
    return postprocess(out.logits[0], out.pred_boxes[0], image.size, loaded.id2label)


def above(detections: list[dict], threshold: float) -> list[dict]:
    return [d for d in detections if d["score"] >= threshold]


def option_label(det: dict) -> str:
    """How a detection is named everywhere: 'index: label (score)'."""
    return f"{det['index']}: {det['label']} ({det['score']:.2f})"

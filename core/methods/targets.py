"""What an explanation explains: one scalar of one detection (DETR query slot).

"class" is the pre-softmax logit of the detection's predicted class (standard for Grad-CAM and
for Chefer et al.'s DETR relevance); "cx", "cy", "w", "h" are the predicted box coordinates
(normalised, after the sigmoid): explaining where the box is, not only what it is.
"""
from __future__ import annotations

import torch

TARGETS = ("class", "cx", "cy", "w", "h")


def predicted_class(logits: torch.Tensor, query: int) -> int:
    """Index of the best real class of `query` in [1, Q, C+1] logits (the last class is no-object)."""
    return int(logits[0, query, :-1].argmax())


def target_score(outputs, query: int, target: str, class_index: int) -> torch.Tensor:
    """[B] scores of one detection from a DETR output, one per batch element.

    `class_index` is fixed by the caller (from the unperturbed image), so a perturbed or
    interpolated input is scored on the same class.
    """
    if target == "class":
        return outputs.logits[:, query, class_index]
    if target in TARGETS:
        return outputs.pred_boxes[:, query, TARGETS.index(target) - 1]
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")

"""What an explanation explains: one scalar of one detection (its query slot).

"class" is the logit of the detection's predicted class: pre-softmax for DETR (standard for
Grad-CAM and for Chefer et al.'s DETR relevance), the class logit itself (before its sigmoid) for
focal-loss heads, which have no no-object column; "cx", "cy", "w", "h" are the predicted box
coordinates (normalised, after the sigmoid): explaining where the box is, not only what it is.
"""
from __future__ import annotations

import torch

TARGETS = ("class", "cx", "cy", "w", "h")


def predicted_class(logits: torch.Tensor, query: int, loaded=None) -> int:
    """Index of the best real class of `query` in [1, Q, C(+1)] logits.

    `loaded` (a LoadedModel) says the head: DETR's last class is no-object and is skipped; a
    sigmoid head's columns are all real classes. Without it, DETR's convention.
    """
    no_object = loaded is None or loaded.family.no_object
    return int((logits[0, query, :-1] if no_object else logits[0, query]).argmax())


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

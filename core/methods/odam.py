"""ODAM (Zhao et al., ICLR 2023, "Gradient-based Instance-Specific Visual Explanations for Object
Specification and Object Discrimination"): one map per detection from the element-wise maps of its
class score and its four box coordinates.

Per target t in (class logit, cx, cy, w, h), with A the layer's activations and g_t = dY_t/dA:
    m_t = ReLU(sum_k g_t,k * A_k)          (the per-target map, HiResCAM's form)
    odam = max_t (m_t / max(m_t))          (element-wise maximum; a target whose map is all 0 is left out)
What is normalised and why: each per-target map m_t is divided by its own maximum before the
maximum over targets. The class logit is unbounded while the box coordinates are sigmoid outputs
in [0, 1] with far smaller gradients, so without it the class map would decide almost every
location and the box evidence (the object's extent) would vanish. After it every target's
strongest location counts as 1, and the combined map is in [0, 1].

One forward; the five gradients come from five backwards over a retained graph, or from one batched
backward (`torch.autograd.grad` with `is_grads_batched=True`): BATCHED says which is the default.
"""
from __future__ import annotations

import torch

from core import params as P
from core.memory import release_free_memory
from core.methods.explanation import Explanation, Progress
from core.methods.gradcam import as_map, forward_and_capture, layer_at, layer_choices
from core.methods.targets import TARGETS, predicted_class, target_score

PARAMS = (P.LAYER,)
# measured (bench/pointing_game.py, bundled demo): ODAM's maximum in the detection's box for 0.906 and
# 0.916 of 911 and 917 detections (two seed sets) at the output of the stage 3 back from the last (demo:
# stage 1), 0.153 / 0.135 at the input projection
DEFAULT_LAYER = ("output", -3)
# five backwards: as fast or faster from 256 px up (median 50 vs 60 ms at 256 px, bench/pointing_game.py
# --odam-timing; DETR-R50 at 800 px 8.3 vs 11.0 s on 2 cores) with a lower peak (R50 800 px: the batched
# backward holds five gradients of every layer at once, +50 to +350 MiB); batched wins only on the
# 128 px demo (46 vs 57 ms)
BATCHED = False


def target_maps(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """[T, H, W] per-target maps ReLU(sum_k g_t,k A_k) from A [C, H, W] and g [T, C, H, W] (float64)."""
    return torch.relu((gradients.double() * activations.double()[None]).sum(1))


def combine(maps: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over targets of each map divided by its own maximum ([T, H, W] -> [H, W])."""
    peaks = maps.amax(dim=(1, 2))
    scaled = maps / torch.where(peaks > 0, peaks, torch.ones_like(peaks))[:, None, None]
    return scaled.amax(0)


def target_gradients(scores: torch.Tensor, inputs, batched: bool = BATCHED) -> tuple[torch.Tensor, ...]:
    """Per input, [T, ...] gradients of each of the T scores: one vmapped backward, or T backwards
    over a retained graph."""
    inputs = list(inputs)
    if batched:
        eye = torch.eye(len(scores), dtype=scores.dtype, device=scores.device)
        try:  # the graph is kept so that the fallback below can still use it
            return torch.autograd.grad(scores, inputs, eye, is_grads_batched=True, retain_graph=True)
        except RuntimeError as err:  # an op vmap cannot batch (Deformable DETR's channels_last convolutions)
            if "vmap" not in str(err):
                raise
    per_score = []
    for k, s in enumerate(scores):
        per_score.append(torch.autograd.grad(s, inputs, retain_graph=k < len(scores) - 1))
        release_free_memory()  # this backward's freed heap, before the next one's (core/memory.py)
    return tuple(torch.stack(g) for g in zip(*per_score))


def odam_layer(model, layer: str | None = None) -> str:
    return layer or layer_at(model, *DEFAULT_LAYER)


def compute_odam(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                 progress: Progress | None = None, batched: bool = BATCHED) -> dict[str, Explanation]:
    """ODAM's combined map of detection `query` (see the module docstring); one forward.

    params: {"layer": a module name (None: the measured default)}. The map is [h, w] float32 at the
    layer's resolution, in [0, 1]; info holds each target's score and its map's maximum.
    """
    model = loaded.model
    layer = odam_layer(model, params.get("layer"))
    with torch.enable_grad():
        outputs, captured, grid = forward_and_capture(model, pixel_values, [layer])
        if progress:
            progress(1, 2)
        class_index = predicted_class(outputs.logits, query, loaded)
        scores = torch.stack([target_score(outputs, query, t, class_index)[0] for t in TARGETS])
        (grads,) = target_gradients(scores, [captured[layer]], batched)  # [5, 1, ...]
    if progress:
        progress(2, 2)
    a = as_map(captured[layer][0].detach(), grid)
    maps = target_maps(a, torch.stack([as_map(g[0], grid) for g in grads]))
    labels = dict(layer_choices(model))
    info = {"layer": layer, "layer_label": labels.get(layer, layer), "target": "+".join(TARGETS),
            "targets": list(TARGETS),
            "target_values": [float(s) for s in scores.detach()],
            "target_peaks": [float(p) for p in maps.amax(dim=(1, 2))],
            "class_index": class_index, "query": int(query), "method": "odam"}
    return {"odam": Explanation(heatmap=combine(maps).float().cpu().numpy(), info=info)}

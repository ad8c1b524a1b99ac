"""Grad-CAM and Grad-CAM++ of one DETR detection on a backbone conv layer.

Both maps come from the same activations A and gradients g = dY/dA, so one forward and one
backward serve both (switching between them is a lookup). Definitions (DESIGN.md):
  Grad-CAM:   w_k = mean_ij g_kij
  Grad-CAM++: alpha = g^2 / (2 g^2 + sum_ab(A_kab) g^3), 0 where the denominator is 0;
              w_k = sum_ij alpha_kij ReLU(g_kij)
  map = ReLU(sum_k w_k A_k), at the layer's own resolution, unnormalised.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from core import params as P
from core.methods.explanation import Explanation, Progress
from core.methods.targets import TARGETS, predicted_class, target_score

PARAMS = (P.LAYER, P.TARGET)


def _stages(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, stage) of the backbone stages that feed DETR (up to the last `out_features` stage)."""
    backbone = model.model.backbone.model
    prefix = "model.backbone.model.encoder.stages"
    used = max(backbone.stage_names.index(f) for f in backbone.out_features)  # "stem" is index 0
    return [(f"{prefix}.{i}", stage) for i, stage in enumerate(backbone.encoder.stages) if i < used]


def _last_conv(stage: torch.nn.Module) -> str:
    """Name (relative to the stage) of the stage's last conv on the main path (not the shortcut)."""
    last = len(stage.layers) - 1
    convs = len(stage.layers[last].layer) - 1
    return f"layers.{last}.layer.{convs}.convolution"


def layer_choices(model) -> list[tuple[str, str]]:
    """(module name as in model.named_modules(), readable label) for every backbone stage: its
    last conv and its output, in network order."""
    choices = []
    for i, (name, stage) in enumerate(_stages(model), start=1):
        choices.append((f"{name}.{_last_conv(stage)}", f"stage {i} last conv"))
        choices.append((name, f"stage {i} output"))
    return choices


def default_layer(model) -> str:
    """The last conv of the last stage that feeds DETR: late enough to be semantic."""
    name, stage = _stages(model)[-1]
    return f"{name}.{_last_conv(stage)}"


@contextmanager
def _activation(module: torch.nn.Module):
    """Capture `module`'s output for this thread only, as a fresh leaf that requires grad.

    The shared model is called by other threads, whose forwards fire this hook too: they pass
    through untouched. Returning the leaf as the module's output makes the rest of the forward
    build its graph from it, so the backward stops at the layer (parameters are frozen and the
    input needs no gradient). The hook is always removed.
    """
    owner, captured = threading.get_ident(), []

    def hook(_module, _inputs, output):
        if threading.get_ident() != owner:
            return None
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(f"layer output must be a [B, C, H, W] tensor, got {type(output).__name__}")
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf.clone()  # a non-leaf: the model may update its output in place (residual adds)

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def cam_maps(activations: torch.Tensor, gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Grad-CAM, Grad-CAM++) maps [H, W] from one image's activations and gradients [C, H, W]."""
    a, g = activations.double(), gradients.double()
    gradcam = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0))
    g2 = g * g
    denom = 2 * g2 + a.sum(dim=(1, 2))[:, None, None] * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(1, 2))
    gradcampp = torch.relu((weights[:, None, None] * a).sum(0))
    return gradcam, gradcampp


def compute_cams(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                 progress: Progress | None = None) -> dict[str, Explanation]:
    """Grad-CAM and Grad-CAM++ of detection `query`: one forward, one backward.

    params: {"layer": a module name (None: default_layer), "target": one of core.methods.targets.TARGETS}.
    Maps are [h, w] float32 at the layer's resolution, after the ReLU, before any resizing.
    """
    model = loaded.model
    layer = params.get("layer") or default_layer(model)
    target = params.get("target") or "class"
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"no layer {layer!r}; choose one of {', '.join(n for n, _ in layer_choices(model))}")

    with torch.enable_grad():
        with _activation(module) as captured:
            outputs = model(pixel_values=pixel_values.detach())
        if len(captured) != 1:
            raise ValueError(f"layer {layer!r} ran {len(captured)} times in one forward; pick a layer that runs once")
        if progress:
            progress(1, 2)
        class_index = predicted_class(outputs.logits, query)
        score = target_score(outputs, query, target, class_index)[0]
        (gradients,) = torch.autograd.grad(score, captured[0])
    if progress:
        progress(2, 2)

    maps = cam_maps(captured[0][0].detach(), gradients[0])
    labels = dict(layer_choices(model))
    info = {"layer": layer, "layer_label": labels.get(layer, layer), "target": target,
            "target_value": float(score.detach()), "class_index": class_index, "query": int(query)}
    return {method: Explanation(heatmap=m.float().cpu().numpy(), info={**info, "method": method})
            for method, m in zip(("gradcam", "gradcam++"), maps)}

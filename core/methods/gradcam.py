"""The CAM family of one DETR detection: Grad-CAM, Grad-CAM++ and three element-wise variants.

Every member comes from the same activations A and gradients g = dY/dA of one forward and one
backward, so switching between them is a lookup. Definitions (DESIGN.md), per channel k:
  Grad-CAM:            w_k = mean_ij g_kij;                        map = ReLU(sum_k w_k A_k)
  Grad-CAM++:          alpha = g^2 / (2 g^2 + sum_ab(A_kab) g^3), 0 where the denominator is 0;
                       w_k = sum_ij alpha_kij ReLU(g_kij);         map = ReLU(sum_k w_k A_k)
  HiResCAM:            map = ReLU(sum_k g_k * A_k)                 (Draelos & Carin, 2020)
  element-wise:        map = sum_k ReLU(g_k * A_k)
  LayerCAM:            map = ReLU(sum_k ReLU(g_k) * A_k)           (Jiang et al., 2021; the outer ReLU
                       matters only where A can be negative: input projection, encoder tokens)
at the layer's own resolution, unnormalised. Grad-CAM's weights average g over the whole map;
DETR's decoder reads the whole map through attention, so those weights say which channels carry
the class, not where this query looked. The element-wise maps keep g where it is.

Layers: backbone stage convs and outputs, the input projection into the transformer and the
last encoder layer's output (tokens reshaped to the feature grid). With no layer given, each
variant is computed at its own measured default (DEFAULT_LAYERS; bench/pointing_game.py), all from
the same backward: one autograd.grad over every captured layer.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from core import params as P
from core.memory import release_free_memory
from core.methods.explanation import Explanation, Progress
from core.models import backbone
from core.methods.targets import TARGETS, predicted_class, target_score

PARAMS = (P.LAYER, P.TARGET)

# name -> (label, one-line tooltip); the page lists them in this order
VARIANTS = {
    "gradcam": ("Grad-CAM", "Channels weighted by their gradient averaged over the whole map: where the class "
                            "is, often not this detection."),
    "gradcam++": ("Grad-CAM++", "Grad-CAM with weights from positive gradients (closed-form alphas); also "
                                "averaged over the map."),
    "hirescam": ("HiResCAM", "Gradient times activation per location, summed over channels, then ReLU: "
                             "what this detection's score reads, where it reads it."),
    "gradcam-elementwise": ("Element-wise Grad-CAM", "ReLU of gradient times activation per channel and "
                                                     "location, summed: only positive evidence, never cancelled."),
    "layercam": ("LayerCAM", "Activations weighted by their positive gradient at each location, summed over "
                             "channels, then ReLU (Jiang et al., 2021)."),
}
# Measured (bench/pointing_game.py on the bundled demo, 300 held-out scenes from seed 1,000,000 and 300
# from 2,000,000; 911 and 917 detections): the share of maps whose maximum lies in the detection's own
# box, each variant at its default layer: element-wise 0.910 / 0.919, LayerCAM 0.926 / 0.937,
# HiResCAM 0.887 / 0.908, ODAM 0.906 / 0.916, Grad-CAM 0.262 / 0.240, Grad-CAM++ 0.236 / 0.253.
# LayerCAM's lead is under two standard errors on each set, so the default stays (README).
DEFAULT_VARIANT = "gradcam-elementwise"
# variant -> its measured best layer as (kind, stage): kind "conv" (the stage's last conv) or
# "output" (the stage's output), stage counted back from the last stage that feeds DETR (-1 the
# last; clamped to the first), so the same rule applies to a backbone of any depth. On the demo's
# 3 stages -2 is stage 2 (stride 8), -3 stage 1 (stride 4). First chosen on the v1 demo; on v2 a
# default moves only where another backbone layer beats it on both seed sets by more than twice the
# standard error (~0.02): Grad-CAM, from stage 2 output (0.192 / 0.190) to stage 3's (0.277 / 0.247),
# measured on the 320 px stage before the last.
DEFAULT_LAYERS = {"gradcam": ("output", -1), "gradcam++": ("output", -3), "hirescam": ("output", -3),
                  "gradcam-elementwise": ("conv", -2), "layercam": ("output", -2)}


def _stages(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, stage) of the backbone stages that feed the detector (core.models.backbone: any
    transformers conv backbone: ResNet, RT-DETR's ResNet-vd, D-FINE's HGNetV2)."""
    return backbone.stages(model)


def _last_conv(stage: torch.nn.Module) -> str:
    """Name (relative to the stage) of the stage's last conv on the main path (not the shortcut)."""
    return backbone.last_conv(stage)


def _transformer_layers(model) -> list[tuple[str, str]]:
    """The input projection into the transformer and the last encoder layer (its tokens on the grid);
    none for the deformable families (multi-scale inputs: no single token grid)."""
    if not hasattr(model.model, "input_projection") or not hasattr(model.model.encoder, "layers"):
        return []
    last = len(model.model.encoder.layers) - 1
    return [("model.input_projection", "input projection"),
            (f"model.encoder.layers.{last}", "encoder output")]


def layer_choices(model) -> list[tuple[str, str]]:
    """(module name as in model.named_modules(), readable label) in network order: every backbone
    stage's last conv and output, then the input projection and the encoder output."""
    choices = []
    for i, (name, stage) in enumerate(_stages(model), start=1):
        choices.append((f"{name}.{_last_conv(stage)}", f"stage {i} last conv"))
        choices.append((name, f"stage {i} output"))
    return choices + _transformer_layers(model)


def layer_at(model, kind: str, stage: int) -> str:
    """The module name of `kind` ("conv": the stage's last conv, "output": the stage's output) of
    backbone stage `stage` counted back from the last one (-1), clamped to the first."""
    stages = _stages(model)
    name, module = stages[max(len(stages) + stage, 0)]
    return f"{name}.{_last_conv(module)}" if kind == "conv" else name


def default_layer(model, variant: str | None = None) -> str:
    """The measured default layer of `variant` (default: DEFAULT_VARIANT; see DEFAULT_LAYERS)."""
    return layer_at(model, *DEFAULT_LAYERS[variant or DEFAULT_VARIANT])


@contextmanager
def _activations(modules: dict[str, torch.nn.Module]):
    """Capture the outputs of `modules` (name -> module) for this thread only: yields name -> [tensor].

    The shared model is called by other threads, whose forwards fire these hooks too: they pass
    through untouched. The first captured output that is not yet in a graph becomes a fresh leaf
    that requires grad, so the backward stops there (parameters are frozen, the input needs no
    gradient); later layers are kept as they are (they depend on that leaf), so one backward gives
    every layer's gradient. The model gets a clone: it may update its output in place (residual
    adds). Outputs are [B, C, H, W] maps or [B, T, C] tokens. The hooks are always removed.
    """
    owner, captured = threading.get_ident(), {name: [] for name in modules}

    def hook_for(name):
        def hook(_module, _inputs, output):
            if threading.get_ident() != owner:
                return None
            if not isinstance(output, torch.Tensor) or output.dim() not in (3, 4):
                raise ValueError(f"layer output must be a [B, C, H, W] or [B, T, C] tensor, "
                                 f"got {type(output).__name__}")
            kept = output if output.requires_grad else output.detach().requires_grad_(True)
            captured[name].append(kept)
            return kept.clone()
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def as_map(tensor: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """One image's layer output as [C, H, W]: a map [C, H, W] as it is, tokens [T, C] onto the grid."""
    return tensor if tensor.dim() == 3 else tensor.transpose(0, 1).reshape(-1, *grid)


def cam_maps(activations: torch.Tensor, gradients: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every VARIANTS map [H, W] (float64) from one image's activations and gradients [C, H, W]."""
    a, g = activations.double(), gradients.double()
    ga = g * a
    g2 = g * g
    denom = 2 * g2 + a.sum(dim=(1, 2))[:, None, None] * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(1, 2))
    return {"gradcam": torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0)),
            "gradcam++": torch.relu((weights[:, None, None] * a).sum(0)),
            "hirescam": torch.relu(ga.sum(0)),
            "gradcam-elementwise": torch.relu(ga).sum(0),
            "layercam": torch.relu((torch.relu(g) * a).sum(0))}


def _modules(model, layers) -> dict[str, torch.nn.Module]:
    names = dict(model.named_modules())
    missing = [n for n in layers if n not in names]
    if missing:
        raise ValueError(f"no layer {missing[0]!r}; choose one of {', '.join(n for n, _ in layer_choices(model))}")
    return {n: names[n] for n in layers}


def forward_and_capture(model, pixel_values: torch.Tensor, layers, **kwargs):
    """One forward (`kwargs` go to the model) with `layers` captured: returns (outputs,
    name -> captured output [1, ...] in the graph, feature grid (h, w))."""
    modules = _modules(model, layers)
    owner, grid = threading.get_ident(), []
    projection = getattr(model.model, "input_projection", None)  # dense families: the token grid
    handle = projection.register_forward_hook(
        lambda m, i, o: grid.append(tuple(o.shape[-2:])) if threading.get_ident() == owner else None
    ) if projection is not None else None
    try:
        with _activations(modules) as captured:
            outputs = model(pixel_values=pixel_values.detach(), **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    for name, got in captured.items():
        if len(got) != 1:
            raise ValueError(f"layer {name!r} ran {len(got)} times in one forward; pick a layer that runs once")
    return outputs, {n: got[0] for n, got in captured.items()}, grid[0] if grid else None


def resolve_layers(model, layer: str | None, methods=tuple(VARIANTS)) -> dict[str, str]:
    """method -> layer: the given one for all, or each method's default."""
    return {m: layer or default_layer(model, m) for m in methods}


def compute_cams(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                 progress: Progress | None = None) -> dict[str, Explanation]:
    """Every VARIANTS map of detection `query`: one forward, one backward.

    params: {"layer": a module name (None: each variant's default_layer), "target": one of
    core.methods.targets.TARGETS}. Maps are [h, w] float32 at the layer's resolution, after the
    final ReLU, before any resizing.
    """
    model = loaded.model
    target = params.get("target") or "class"
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    layer_of = resolve_layers(model, params.get("layer"))
    layers = list(dict.fromkeys(layer_of.values()))
    with torch.enable_grad():
        outputs, captured, grid = forward_and_capture(model, pixel_values, layers)
        if progress:
            progress(1, 2)
        class_index = predicted_class(outputs.logits, query, loaded)
        score = target_score(outputs, query, target, class_index)[0]
        gradients = torch.autograd.grad(score, [captured[n] for n in layers])
    release_free_memory()  # the backward's freed heap, before the maps' large float64 copies (core/memory.py)
    if progress:
        progress(2, 2)
    return cam_explanations(model, captured, dict(zip(layers, gradients)), grid, layer_of,
                            {"target": target, "target_value": float(score.detach()), "class_index": class_index,
                             "query": int(query)})


def cam_explanations(model, captured: dict, gradients: dict, grid, layer_of: dict, info: dict) -> dict:
    """method -> Explanation from captured outputs and their gradients (name -> [1, ...])."""
    labels = dict(layer_choices(model))
    per_layer = {n: cam_maps(as_map(captured[n][0].detach(), grid), as_map(gradients[n][0], grid))
                 for n in dict.fromkeys(layer_of.values())}
    return {m: Explanation(heatmap=per_layer[n][m].float().cpu().numpy(),
                           info={"layer": n, "layer_label": labels.get(n, n), **info, "method": m})
            for m, n in layer_of.items()}

"""Sampling points: the deformable decoder's counterpart of the attention map (Deformable DETR,
RT-DETR, D-FINE).

A deformable cross-attention does not attend to every image token: each head samples a few
points per feature level around the query's reference box and mixes them with softmax weights
(the weights of one head sum to 1 over all its levels and points). The map of a detection is its
query's sampling locations in one decoder layer (default the last), each splatted bilinearly
with its attention weight onto the finest feature level's grid, summed over levels (or one
level) and averaged over heads: with every point inside the image the map sums to 1, like the
dense attention map.

The locations are the very tensors the model samples with: for Deformable DETR and RT-DETR the
arguments of the sampling kernel (a forward pre-hook), for D-FINE rebuilt from the captured
offsets and reference boxes with D-FINE's own rule (its kernel is a plain function, not a module).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from core import params as P
from core.methods.explanation import Explanation, Progress
from core.methods.targets import predicted_class

PARAMS = (P.Param("decoder_layer", "int", -1, "Decoder layer whose sampling points are shown (-1: the one that "
                   "scores the detections, the last but in D-FINE its eval_idx).",
                   label="Decoder layer", min=-1, max_from="max_decoder_layer"),
          P.Param("level", "int", -1, "Feature level whose points are shown (0: the finest; -1: all levels summed).",
                  label="Feature level", min=-1, max_from="max_level"))


def splat(points: torch.Tensor, weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear splat of weights [N] at normalised (x, y) points [N, 2] onto a [height, width] grid.

    Same convention as the model's `grid_sample(align_corners=False)`: cell (i, j) is centred at
    ((j + 0.5) / width, (i + 0.5) / height); a point's weight goes to its 4 nearest cell centres
    in bilinear proportions, and the share of a centre outside the grid is dropped (the model
    reads zeros there).
    """
    u = points[:, 0].double() * width - 0.5
    v = points[:, 1].double() * height - 0.5
    j0, i0 = u.floor(), v.floor()
    fu, fv = u - j0, v - i0
    grid = torch.zeros(height * width, dtype=torch.float64, device=points.device)
    w = weights.double()
    for di, dj, share in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
        i, j = (i0 + di).long(), (j0 + dj).long()
        inside = (i >= 0) & (i < height) & (j >= 0) & (j < width)
        grid.index_add_(0, (i * width + j)[inside], (w * share)[inside])
    return grid.reshape(height, width)


def _arg(args, kwargs, index: int, name: str):
    return kwargs[name] if name in kwargs else args[index]


@contextmanager
def sampling_records(model):
    """Yields a list that this thread's forward fills, one entry per decoder layer, in order:
    {"points": [B, Q, heads, K, 2] normalised (x, y), "weights": [B, Q, heads, K], "levels": [K]
    level of each point, "shapes": [(h, w) per level]}. Own hooks, this thread only, removed on exit.
    """
    from core.models.families import family_of
    me, records = threading.get_ident(), []
    layers = model.model.decoder.layers
    handles = []

    def kernel_inputs(_module, args, kwargs):  # Deformable DETR, RT-DETR: MultiScaleDeformableAttention
        if threading.get_ident() != me:
            return
        shapes = [tuple(int(v) for v in s) for s in _arg(args, kwargs, 2, "value_spatial_shapes_list")]
        locations = _arg(args, kwargs, 4, "sampling_locations").detach()  # [B, Q, heads, L, P, 2]
        weights = _arg(args, kwargs, 5, "attention_weights").detach()    # [B, Q, heads, L, P]
        levels, points = locations.shape[3], locations.shape[4]
        records.append({"points": locations.flatten(3, 4), "weights": weights.flatten(3, 4), "shapes": shapes,
                        "levels": torch.arange(levels).repeat_interleave(points)})

    if family_of(model).dfine_points:
        for layer in layers:
            attention, got = layer.encoder_attn, {}

            def inputs(_module, args, kwargs, got=got):
                if threading.get_ident() == me:
                    got["reference"] = kwargs["reference_points"].detach()
                    got["shapes"] = [tuple(int(v) for v in s) for s in kwargs["spatial_shapes_list"]]

            def offsets(_module, _args, output, got=got):
                if threading.get_ident() == me:
                    got["offsets"] = output.detach()

            def outputs(module, _args, output, got=got):
                if threading.get_ident() != me:
                    return
                weights = output[1].detach()  # [B, Q, heads, K] softmax over all levels' points
                batch, queries, heads, total = weights.shape
                offset = got["offsets"].reshape(batch, queries, heads, total, 2)
                reference = got["reference"]  # [B, Q, 1, 4] cxcywh: D-FINE's rule for 4-d references
                scale = module.num_points_scale.to(offset.dtype)[:, None]
                points = reference[:, :, None, :, :2] + offset * scale * reference[:, :, None, :, 2:] * module.offset_scale
                records.append({"points": points, "weights": weights, "shapes": got["shapes"],
                                "levels": torch.arange(len(module.num_points_list)).repeat_interleave(
                                    torch.tensor(module.num_points_list))})

            handles += [attention.register_forward_pre_hook(inputs, with_kwargs=True),
                        attention.sampling_offsets.register_forward_hook(offsets),
                        attention.register_forward_hook(outputs)]
    else:
        handles += [layer.encoder_attn.attn.register_forward_pre_hook(kernel_inputs, with_kwargs=True)
                    for layer in layers]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def query_map(record: dict, query: int, level: int = -1) -> tuple[torch.Tensor, dict]:
    """One query's map on the finest level's grid (heads averaged) and its facts."""
    points, weights = record["points"][0, query], record["weights"][0, query]  # [heads, K, 2], [heads, K]
    heads = points.shape[0]
    levels = record["levels"].to(points.device).expand(heads, -1)
    keep = torch.ones_like(levels, dtype=torch.bool) if level < 0 else levels == level
    height, width = max(record["shapes"], key=lambda s: s[0] * s[1])
    heatmap = splat(points[keep].reshape(-1, 2), weights[keep].reshape(-1), height, width) / heads
    mass = [float(weights[levels == lv].sum() / heads) for lv in range(len(record["shapes"]))]
    return heatmap, {"grid": [height, width], "heads": heads, "points_per_head": int(points.shape[1]),
                     "level_weight": [round(m, 6) for m in mass]}


def compute_sampling_points(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                            progress: Progress | None = None) -> dict[str, Explanation]:
    """Sampling points of `query` in one decoder layer (default the last): one forward, no backward."""
    layer, level = int(params.get("decoder_layer", -1)), int(params.get("level", -1))
    with torch.no_grad(), sampling_records(loaded.model) as records:
        outputs = loaded.model(pixel_values=pixel_values)
    if layer == -1:  # D-FINE may score from an earlier layer (config.eval_idx): show that one
        layer = getattr(loaded.model.model.decoder, "eval_idx", len(records) - 1)
    heatmap, info = query_map(records[layer], query, level)
    class_index = predicted_class(outputs.logits, query, loaded)
    if progress:
        progress(1, 1)
    info.update(layer=layer % len(records), level=level, class_index=class_index, query=int(query),
                label=loaded.id2label.get(class_index, str(class_index)))
    return {"sampling_points": Explanation(heatmap.float().cpu().numpy(), info)}

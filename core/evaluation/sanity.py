"""Model-randomisation sanity check (Adebayo et al. 2018, cascading randomisation).

On a deep copy of the model (the served one is never touched) the weights are randomised from
the top down, cumulatively: prediction heads (class and box: either may be the target), decoder,
encoder (with the input projection), then the backbone stages from last to first. After each
step every method's map is recomputed and compared with the original by Spearman's rho.

A map that still has |rho| > 0.9 once heads, decoder and encoder are random does not depend on
what the transformer learned: it is flagged. Randomised parameters are drawn from a normal with
each tensor's own mean and std, so activations keep their scale; buffers (the backbone's frozen
batch-norm statistics) are kept, since the random conv weights already erase what was learned.
"""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import torch

from core.methods.explanation import Progress

THRESHOLD = 0.9
FLAG_AFTER = "encoder"


def cascade_steps(model) -> list[tuple[str, tuple[str, ...]]]:
    """(step name, parameter-name prefixes) from the top of DETR down."""
    steps = [("heads", ("class_labels_classifier", "bbox_predictor")),
             ("decoder", ("model.decoder", "model.query_position_embeddings")),
             ("encoder", ("model.encoder", "model.input_projection"))]
    backbone = model.model.backbone.model
    if not hasattr(backbone, "stage_names"):  # not transformers' ResNet: the backbone in one step
        return steps + [("backbone", ("model.backbone",))]
    # stages after the last one DETR reads (stage_names[0] is the stem) cannot change anything
    used = max(backbone.stage_names.index(f) for f in backbone.out_features)
    prefix = "model.backbone.model"
    steps += [(f"stage{i}", (f"{prefix}.encoder.stages.{i - 1}",)) for i in range(used, 0, -1)]
    return steps + [("stem", (f"{prefix}.embedder",))]


def randomise(model, prefixes, generator: torch.Generator) -> int:
    """Redraw (in place) every parameter under `prefixes` from N(its mean, its std); returns how many."""
    count = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(name == pre or name.startswith(pre + ".") for pre in prefixes):
                std = float(p.float().std()) if p.numel() > 1 else 0.0
                noise = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
                p.copy_(noise * std + p.mean())
                count += 1
    return count


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse.ravel()]


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps of one shape; nan when either is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _maps(loaded, pixel_values, query, methods: dict) -> dict[str, np.ndarray]:
    """Each method's map; methods of one family with the same params share one computation."""
    from core.methods.registry import METHODS  # the registry imports the method modules
    done, maps = {}, {}
    for name, params in methods.items():
        method = METHODS[name]
        params = {**method.defaults, **(params or {})}
        key = (method.family, json.dumps(params, sort_keys=True))
        if key not in done:
            done[key] = method.compute(loaded, pixel_values, query, params)
        maps[name] = np.asarray(done[key][name].heatmap, dtype=np.float64)
    return maps


def sanity_check(loaded, pixel_values: torch.Tensor, query: int, methods: dict, progress: Progress | None = None,
                 steps: list | None = None, seed: int = 0) -> dict:
    """methods: name -> params. Returns {"steps": [names], "threshold", "flag_after",
    "methods": {name: {"rho": [per step], "maps": [original, after each step], "flagged": bool}}}."""
    copied = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
    steps = cascade_steps(copied.model) if steps is None else steps
    generator = torch.Generator().manual_seed(seed)
    history = {name: [m] for name, m in _maps(copied, pixel_values, query, methods).items()}
    if progress:
        progress(1, len(steps) + 1)
    for k, (_, prefixes) in enumerate(steps):
        randomise(copied.model, prefixes, generator)
        for name, m in _maps(copied, pixel_values, query, methods).items():
            history[name].append(m)
        if progress:
            progress(k + 2, len(steps) + 1)
    names = [name for name, _ in steps]
    after = names.index(FLAG_AFTER) if FLAG_AFTER in names else None
    result = {}
    for name, maps in history.items():
        rho = [spearman(maps[0], m) for m in maps[1:]]
        flagged = after is not None and bool(abs(rho[after]) > THRESHOLD)  # nan compares False: not flagged
        result[name] = {"rho": rho, "maps": maps, "flagged": flagged}
    return {"steps": names, "threshold": THRESHOLD, "flag_after": FLAG_AFTER, "methods": result}

"""How stable a detection's explanation map is under MC-Dropout: the map in every dropout sample.

The samples are the Uncertainty card's (core/models/mc_dropout.py): the same private train-mode
transformer copy, the same per-sample dropout masks for (seed, p), the same identity of the
detection across samples: its query slot ("slot") or the sample slot Hungarian-matched to it
("matched"). Returned: every sample's map, their mean and per-pixel standard deviation (ddof 0)
and `stability` = the mean pairwise Spearman rank correlation of the sample maps (1: dropout
never reorders the map's pixels; nan pairs, a constant map, are left out).

CAM family (maps at a layer before the transformer: a backbone layer or the input projection).
The backbone has no dropout, so the layer's activations A are the same in every sample, and so is
everything between A and the transformer's input embeddings E = f(A). The backbone runs once
(batch 1, graph kept from A); the T transformer samples start from E repeated over a batch, and
one backward of the summed per-sample scores gives every sample's dY_t/dE_t (score t depends
only on row t); one batched vector-Jacobian product (autograd `is_grads_batched`) carries all T
back through f to A. This is the same as expanding A to [T, C, H, W] and backpropagating once,
without running f T times. `chunk` samples share a transformer batch (memory and, on CPU, cache:
mc_dropout.default_chunk); with chunk >= T the transformer goes back once for all samples.

Decoder attention: the detection's cross-attention (heads averaged, one decoder layer) in every
sample, forwards only; only that one layer runs eager attention (to return its weights).
"""
from __future__ import annotations

import copy
import threading
from dataclasses import replace

import numpy as np
import torch

from core import params as P
from core.methods import gradcam
from core.methods.explanation import Progress
from core.methods.targets import TARGETS
from core.models import mc_dropout as mc

IDENTITIES = ("slot", "matched")
ATTENTION = ("attention",)
# The CLI's `explain --mc-samples T --dropout P --seed S`: the Uncertainty card's declarations,
# T renamed (IG has its own "samples") and optional (absent: the plain map)
SAMPLES = replace(P.MC_SAMPLES, name="mc_samples", flag="--mc-samples", default=None, optional=True,
                  help="Map uncertainty: the map in T MC-Dropout samples (mean map, std map, stability); "
                       "CAM family and attention.")
PARAMS = (SAMPLES, P.MC_DROPOUT, P.MC_SEED)


def cam_methods() -> tuple[str, ...]:
    from core.methods.registry import METHODS
    return tuple(name for name, m in METHODS.items() if m.family == "cam")


def supported() -> tuple[str, ...]:
    return cam_methods() + ATTENTION


def _cam_maps(a: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    maps = gradcam.cam_maps(a, g)
    return maps if isinstance(maps, dict) else dict(zip(("gradcam", "gradcam++"), maps))


def stability(maps: np.ndarray) -> float:
    """Mean pairwise Spearman rank correlation of maps [T, ...] (nan when fewer than 2 usable)."""
    from scipy.stats import rankdata
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    flat = flat[np.ptp(flat, axis=1) > 0]  # a constant map has no ranking
    if len(flat) < 2:
        return float("nan")
    corr = np.corrcoef(rankdata(flat, axis=1))
    return float(corr[np.triu_indices(len(flat), 1)].mean())


def _features(loaded, pixel_values: torch.Tensor) -> mc.BackboneFeatures:
    """mc_dropout.backbone_features with the graph kept (embeds may be [T, S, d] after a hook)."""
    detr = loaded.model.model
    pixel_mask = torch.ones((1, *pixel_values.shape[-2:]), device=pixel_values.device, dtype=torch.long)
    feature_map, mask = detr.backbone(pixel_values, pixel_mask)[-1]
    projected = detr.input_projection(feature_map)
    embeds = projected.flatten(2).transpose(1, 2)
    pos = detr.position_embedding(shape=torch.Size((1, *projected.shape[1:])), device=pixel_values.device, dtype=pixel_values.dtype,
                                  mask=mask).flatten(2).transpose(1, 2)
    return mc.BackboneFeatures(embeds, mask.flatten(1), pos, tuple(projected.shape[-2:]))


def _scores(logits: torch.Tensor, boxes: torch.Tensor, slots, target: str, class_index: int) -> torch.Tensor:
    """[n] target score of each sample at its own slot."""
    rows = torch.arange(len(logits), device=logits.device)
    slots = torch.as_tensor(slots, device=logits.device)
    if target == "class":
        return logits[rows, slots, class_index]
    return boxes[rows, slots, TARGETS.index(target) - 1]


def _check(method: str, identity: str, target: str, layer: str | None, model) -> str:
    if method not in supported():
        raise ValueError(f"map uncertainty is for {', '.join(supported())}; got {method!r}")
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(IDENTITIES)}; got {identity!r}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if method in ATTENTION:
        return ""
    try:
        layer = layer or gradcam.default_layer(model, method)
    except TypeError:  # one default layer for the whole family
        layer = layer or gradcam.default_layer(model)
    if layer.startswith("model.encoder") or layer.startswith("model.decoder"):
        raise ValueError("map uncertainty needs a layer before the transformer (backbone or input projection)")
    if layer not in dict(loaded_layers(model)):
        raise ValueError(f"no layer {layer!r}; choose one of {', '.join(n for n, _ in loaded_layers(model))}")
    return layer


def loaded_layers(model) -> list[tuple[str, str]]:
    return [(n, label) for n, label in gradcam.layer_choices(model)
            if not (n.startswith("model.encoder") or n.startswith("model.decoder"))]


def map_uncertainty(loaded, pixel_values: torch.Tensor, query: int, method: str, params: dict | None = None,
                    samples: int = 30, p: float | None = None, seed: int = 0, identity: str = "slot",
                    progress: Progress | None = None, chunk: int | None = None,
                    features: mc.BackboneFeatures | None = None) -> dict:
    """The map of `method` for detection `query` in each of T MC-Dropout samples -> dict:

    mean, std [h, w] float32; maps [T, h, w]; stability (float); slots (the sample slot followed,
    per sample); method, layer (CAM), target, class_index, samples, dropout, seed, identity.
    params: the method's own parameters (CAM: layer, target; attention: decoder_layer);
    p = None: the model's trained rate; identity: "slot" or "matched" (as the Uncertainty card);
    chunk: samples per transformer batch (None: mc_dropout.default_chunk; memory grows with it);
    features: mc_dropout.backbone_features of this image if cached (attention only: the CAM
    family needs the backbone's graph from its layer).
    """
    params = dict(params or {})
    p = mc.trained_dropout(loaded) if p is None else float(p)
    mc._check(samples, p, 1)
    target = params.get("target") or "class"
    layer = _check(method, identity, target, params.get("layer"), loaded.model)
    # p = 0: every sample is the deterministic model; computed once, so the std is exactly 0
    runs = 1 if p == 0 else samples
    if method in ATTENTION:
        maps, slots, info = _attention(loaded, pixel_values, query, int(params.get("decoder_layer", -1)), runs, p,
                                       seed, identity, progress, features)
    else:
        maps, slots, info = _cams(loaded, pixel_values, query, method, layer, target, runs, p, seed, identity,
                                  progress, chunk or mc.default_chunk(pixel_values.device))
    maps, slots = np.repeat(maps.astype(np.float64), samples // runs, 0), np.repeat(slots, samples // runs, 0)
    return {"mean": maps.mean(0).astype(np.float32), "std": maps.std(0).astype(np.float32),
            "maps": maps.astype(np.float32), "stability": stability(maps), "slots": slots.tolist(),
            **info, "samples": samples}


def _deterministic(private, noise, features: mc.BackboneFeatures):
    """The record pass (no dropout): lists the dropout sites, gives the deterministic outputs."""
    one = mc.BackboneFeatures(features.embeds[:1].detach(), features.mask, features.pos.detach(), features.grid)
    with torch.no_grad(), noise.record():
        return private(one, 1)


def _follow(identity: str, query: int, det, logits: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    """[n] the slot of each sample that is the detection: its own slot, or the Hungarian-matched one."""
    if identity == "slot":
        return np.full(len(logits), query)
    det_logits, det_boxes = det
    slots = mc.match_slots(det_boxes[0], mc._labels(det_logits[0]), logits.detach().float().softmax(-1),
                           boxes.detach())
    return slots[:, query]


def _cams(loaded, pixel_values, query, method, layer, target, samples, p, seed, identity, progress, chunk) -> dict:
    private = mc._transformer_copy(loaded, p)
    noise = mc._SampleDropout(seed, samples, pixel_values.device)
    module = dict(loaded.model.named_modules())[layer]
    total = samples + 2
    with torch.enable_grad():
        with gradcam._activations({layer: module}) as found:
            features = _features(loaded, pixel_values.detach())
        captured = found[layer]
        if len(captured) != 1:
            raise ValueError(f"layer {layer!r} ran {len(captured)} times in one forward; pick a layer that runs once")
        det = _deterministic(private, noise, features)
        class_index = int(mc._labels(det[0][0])[query])
        if progress:
            progress(1, total)
        grads, slots = [], []
        for start in range(0, samples, chunk):
            rows = list(range(start, min(samples, start + chunk)))
            # the chunk's samples start from one shared copy of the embeddings: the backward stops there
            embeds = features.embeds.detach().expand(len(rows), -1, -1).clone().requires_grad_(True)
            noise.draw(rows)
            with noise:
                logits, boxes = private(mc.BackboneFeatures(embeds, features.mask, features.pos, features.grid),
                                        len(rows))
            chosen = _follow(identity, query, det, logits, boxes)
            score = _scores(logits, boxes, chosen, target, class_index).sum()  # score t depends on row t only
            grads.append(torch.autograd.grad(score, embeds)[0])
            slots.append(chosen)
            if progress:
                progress(rows[-1] + 2, total)
        # every sample's gradient from the embeddings back to A: one batched vector-Jacobian
        # product through the deterministic layers between A and the transformer
        (gradient,) = torch.autograd.grad(features.embeds, captured[0], torch.cat(grads)[:, None],
                                          is_grads_batched=True)
    a = captured[0][0].detach()
    maps = np.stack([_cam_maps(a, g[0])[method].float().cpu().numpy() for g in gradient])
    if progress:
        progress(total, total)
    return maps, np.concatenate(slots), {
        "method": method, "layer": layer, "target": target, "class_index": class_index, "query": int(query),
        "dropout": p, "seed": seed, "identity": identity, "chunk": chunk}


def cam_maps_naive(loaded, pixel_values, query: int, method: str, params: dict | None = None, samples: int = 30,
                   p: float | None = None, seed: int = 0, identity: str = "slot") -> np.ndarray:
    """Reference: [T, h, w] maps one sample at a time, each a full forward and backward of a
    private train-mode copy of the whole model (eager attention) with the same dropout masks."""
    params = dict(params or {})
    p = mc.trained_dropout(loaded) if p is None else float(p)
    target = params.get("target") or "class"
    layer = _check(method, identity, target, params.get("layer"), loaded.model)
    private = mc._private_copy(loaded.model, p)
    module = dict(private.named_modules())[layer]
    noise = mc._SampleDropout(seed, samples, pixel_values.device)
    with torch.no_grad(), noise.record():
        det = private(pixel_values=pixel_values)
    det = (det.logits, det.pred_boxes)
    class_index = int(mc._labels(det[0][0])[query])
    maps = []
    for t in range(samples):
        noise.draw([t])
        with torch.enable_grad(), noise, gradcam._activations({layer: module}) as found:
            captured = found[layer]
            out = private(pixel_values=pixel_values)
            slot = _follow(identity, query, det, out.logits, out.pred_boxes)
            score = _scores(out.logits, out.pred_boxes, slot, target, class_index).sum()
            (g,) = torch.autograd.grad(score, captured[0])
        maps.append(_cam_maps(captured[0][0].detach(), g[0])[method].float().cpu().numpy())
    return np.stack(maps)


# ---- decoder attention --------------------------------------------------------------------------

_COPY: dict = {}
_COPY_LOCK = threading.Lock()


def _attention_copy(loaded, p: float, decoder_layer: int):
    """A private train-mode transformer at rate p whose one decoder cross-attention layer runs
    eager (it returns its weights) and every other attention fused (SDPA: no [T, heads, S, S]
    weights in the encoder, several times faster on CPU). Kept for the last (model, p, layer)."""
    key = (id(loaded.model), p, decoder_layer)
    with _COPY_LOCK:
        private = _COPY.get(key)
    if private is None:
        private = mc._private_copy(mc._Transformer(loaded.model), p, attention="sdpa")
        cross = private.decoder.layers[decoder_layer].encoder_attn
        cross.config = copy.copy(cross.config)  # its own config: only this layer goes eager
        cross.config._attn_implementation = "eager"
        with _COPY_LOCK:
            _COPY.clear()
            _COPY[key] = private
    return private


@torch.no_grad()
def _attention(loaded, pixel_values, query, decoder_layer, samples, p, seed, identity, progress, features) -> dict:
    decoder_layer %= loaded.model.config.decoder_layers
    private = _attention_copy(loaded, p, decoder_layer)
    features = features if features is not None else mc.backbone_features(loaded, pixel_values)
    noise = mc._SampleDropout(seed, samples, pixel_values.device)
    owner, got = threading.get_ident(), []
    layer = private.decoder.layers[decoder_layer].encoder_attn

    def hook(_module, _inputs, output):
        if threading.get_ident() == owner:
            got.append(output[1])

    handle = layer.register_forward_hook(hook)
    try:
        with noise.record():
            det = private(features, 1)
        got.clear()
        noise.draw(list(range(samples)))
        with noise:
            logits, boxes = private(features, samples)
    finally:
        handle.remove()
    slots = _follow(identity, query, det, logits, boxes)
    cross = got[0]  # [T, heads, Q, S]
    h, w = features.grid
    maps = cross[torch.arange(samples), :, torch.as_tensor(slots)].mean(1).reshape(samples, h, w)
    if progress:
        progress(1, 1)
    return maps.float().cpu().numpy(), slots, {
        "method": "attention", "decoder_layer": decoder_layer,
        "class_index": int(mc._labels(det[0][0])[query]), "query": int(query), "dropout": p, "seed": seed,
        "identity": identity}

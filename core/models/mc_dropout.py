"""MC-Dropout uncertainty for DETR detections: T stochastic passes, statistics per query slot.

How it stays fast: the backbone (ResNet, no dropout, ~85% of a forward) runs once
(`backbone_features`, cacheable); only the encoder, decoder and heads run T times, batched in
chunks, with fused (SDPA) attention since sampling needs no attention maps; each sample's masks
are drawn in one call, and the Hungarian matching of a chunk runs on CPU threads while the next
chunk runs (on a GPU, per-call mask draws and the matching took longer than the passes themselves).
How it stays thread-safe: the shared model is never touched; a private structural copy of its
transformer (same parameter tensors, own modules, so its train flag and dropout rates are its
own) runs in train mode, and its dropout masks come from private per-sample generators through a
thread-local torch function mode, so neither the global RNG nor other threads are involved.

Choices (documented for callers):
- Dropout sites: p replaces the rate wherever DETR uses `config.dropout` (encoder input, after
  attention and after the FFN in every layer): the only dropout DETR trains with. Activation and
  attention-probability dropout (0 in DETR configs) are turned off, so p alone sets the noise and
  p = 0 is exactly the deterministic model. The trained rate is `trained_dropout(loaded)`.
- Other families (Conditional DETR, DAB-DETR, Deformable DETR: frozen batch norm, trained dropout):
  a private copy of the whole model runs T times, batched (`_WholeModel`); their sigmoid heads
  have no no-object class, so a slot's statistics are those of its label's Bernoulli
  (`uncertainty_sigmoid`). RT-DETR and D-FINE are trained without dropout: refused (`applies`).
- Masks are a function of (seed, sample index) only, not of chunking or threads: the same seed
  gives the same samples at any chunk size, and the fast and naive paths give identical samples.
- Per-sample score of a detection: the softmax probability (classes incl. no-object) of the
  deterministic detection's label, so a sample that changes its mind shows a low score.
  Variation ratio uses each sample's own top real class. Entropy and mutual information are over
  the full distribution incl. no-object, in nats. Spreads (std, covariance) are over the T
  samples (ddof = 0).
- Statistics are computed for ALL query slots; callers filter by the deterministic `score`, so a
  threshold slider never re-runs sampling (`above_threshold_fraction` is for `threshold`, and
  `above_threshold_fraction(scores, t)` recomputes it for another).
- Identity across samples: by query slot (top-level keys) and by Hungarian matching of each
  sample's slots to the deterministic slots with DETR's matching cost (class 1, L1 5, GIoU 2)
  (the "matched" sub-dict); `slot_swap_fraction` = fraction of samples where the two disagree.
"""
from __future__ import annotations

import copy
import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from core import params as P
from core.models.detection import postprocess
from core.methods.explanation import Progress, partial_of

MAX_SAMPLES = P.MC_SAMPLES.max  # the declared ranges (core/params.py)
MAX_P = P.MC_DROPOUT.max
MATCH_WEIGHTS = (1.0, 5.0, 2.0)  # DETR's HungarianMatcher: class, L1, GIoU


@dataclass
class BackboneFeatures:
    """The deterministic part of a forward, for one image: what the encoder consumes."""

    embeds: torch.Tensor   # [1, S, d] projected, flattened feature map
    mask: torch.Tensor     # [1, S] 1 = real pixel feature
    pos: torch.Tensor      # [1, S, d] spatial position embeddings
    grid: tuple[int, int]  # feature map (height, width), S = height * width


def applies(loaded) -> str | None:
    """None where MC-Dropout runs on `loaded`, else one sentence why not: a model trained without
    dropout (RT-DETR's and D-FINE's configs: rate 0) has no trained noise to sample, and its hybrid
    encoder's batch norms would not survive the train-mode copy the sampler runs."""
    if trained_dropout(loaded) == 0:
        return (f"This {loaded.family.name} model was trained without dropout (rate 0): "
                f"MC-Dropout has no trained dropout to sample.")
    return None


def _fast(loaded) -> bool:
    """DETR itself: backbone once, then only its encoder/decoder/heads T times (`_Transformer`).
    Other families run their whole private copy T times (`_WholeModel`), batched."""
    from transformers import DetrForObjectDetection
    return isinstance(loaded.model, DetrForObjectDetection)


def trained_dropout(loaded) -> float:
    """The dropout rate the model was trained with."""
    return float(loaded.model.config.dropout)


@torch.no_grad()
def backbone_features(loaded, pixel_values: torch.Tensor) -> BackboneFeatures:
    """Backbone + input projection + position embeddings of a [1, 3, H, W] input, as DetrModel does."""
    detr = loaded.model.model
    batch, _, height, width = pixel_values.shape
    pixel_mask = torch.ones((batch, height, width), device=pixel_values.device, dtype=torch.long)
    feature_map, mask = detr.backbone(pixel_values, pixel_mask)[-1]
    embeds = detr.input_projection(feature_map).flatten(2).transpose(1, 2)
    pos = detr.position_embedding(shape=feature_map.shape, device=pixel_values.device, dtype=pixel_values.dtype,
                                  mask=mask).flatten(2).transpose(1, 2)
    return BackboneFeatures(embeds, mask.flatten(1), pos, tuple(feature_map.shape[-2:]))


class _Transformer(nn.Module):
    """Encoder, decoder and heads of a DetrForObjectDetection, run from backbone features."""

    def __init__(self, detr):
        super().__init__()
        self.encoder, self.decoder = detr.model.encoder, detr.model.decoder
        self.query_position_embeddings = detr.model.query_position_embeddings
        self.class_labels_classifier, self.bbox_predictor = detr.class_labels_classifier, detr.bbox_predictor

    def forward(self, features: BackboneFeatures, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, Q, C+1] logits and [n, Q, 4] boxes: n passes over the same features."""
        # no padding (one image): no mask, the same softmax without a [n, S, S] bias in every layer
        mask = None if features.mask.all() else features.mask.expand(n, -1)
        pos = features.pos.expand(n, -1, -1)
        encoded = self.encoder(inputs_embeds=features.embeds.expand(n, -1, -1), attention_mask=mask,
                               spatial_position_embeddings=pos).last_hidden_state
        query_pos = self.query_position_embeddings.weight.unsqueeze(0).repeat(n, 1, 1)
        hidden = self.decoder(inputs_embeds=torch.zeros_like(query_pos), encoder_hidden_states=encoded,
                              encoder_attention_mask=mask, spatial_position_embeddings=pos,
                              object_queries_position_embeddings=query_pos).last_hidden_state
        return self.class_labels_classifier(hidden), self.bbox_predictor(hidden).sigmoid()


class _WholeModel(nn.Module):
    """Any DETR-family detector run as a private copy: n passes over one [1, 3, H, W] input. Their
    backbones use frozen batch norm, so train mode changes only dropout (and the layer-drop and
    attention-dropout rates, which `_private_copy` sets to 0)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixel_values.expand(n, -1, -1, -1))
        return out.logits, out.pred_boxes


def _private_copy(module: nn.Module, p: float, attention: str | None = None) -> nn.Module:
    """A copy of `module` in train mode with dropout rate p, sharing its parameter tensors.

    Parameters and buffers map to themselves (no weight copy; nothing writes them under no_grad);
    hook dicts map to empty ones, so hooks other requests put on the shared model never fire here.
    `attention` switches the copy's attention implementation (its config is its own).
    """
    memo = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    for m in module.modules():
        for key, value in vars(m).items():
            if "hooks" in key and isinstance(value, dict):
                memo[id(value)] = type(value)()
    private = copy.deepcopy(module, memo).train()
    for m in private.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        for key, rate in (("dropout", p), ("activation_dropout", 0.0), ("attention_dropout", 0.0)):
            if isinstance(getattr(m, key, None), float):
                setattr(m, key, rate)
        if attention and getattr(m, "config", None) is not None:
            m.config._attn_implementation = attention
    return private


def _sample_seeds(seed: int, samples: int) -> list[int]:
    return [int(s.generate_state(1, np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(samples)]


class _SampleDropout(TorchFunctionMode):
    """Serves F.dropout (in this thread only) from masks drawn up front, per sample.

    `record()` wraps a deterministic pass (every dropout call is the identity): it lists the
    dropout calls that will act (p > 0). `draw(rows)` then draws, for each sample index in
    `rows`, all the masks of one forward with one call on that sample's private generator, so a
    mask depends on (seed, sample) only, never on batching, and a chunk costs one draw per sample
    instead of one per dropout call.
    """

    def __init__(self, seed: int, samples: int, device):
        super().__init__()
        self.generators = [torch.Generator(device).manual_seed(s) for s in _sample_seeds(seed, samples)]
        self.device, self.sites, self.recording = device, [], False
        self.keep, self.masks, self.cursor = 1.0, None, 0

    @contextmanager
    def record(self):
        self.sites, self.recording = [], True
        try:
            with self:
                yield
        finally:
            self.recording = False
        rates = {p for _, p in self.sites}
        if len(rates) > 1:
            raise RuntimeError(f"dropout sites with different rates {sorted(rates)}")
        self.keep = 1.0 - rates.pop() if rates else 1.0

    def draw(self, rows: list[int]) -> None:
        total = sum(shape.numel() for shape, _ in self.sites)
        self.masks = torch.stack([torch.rand(total, generator=self.generators[r], device=self.device) < self.keep
                                  for r in rows])
        self.cursor = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.dropout:
            return func(*args, **kwargs)
        x, p = args[0], kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        training, inplace = kwargs.get("training", True), kwargs.get("inplace", False)
        if self.recording:
            if p > 0 and training:
                self.sites.append((x.shape[1:], float(p)))
            return x
        if not training or p == 0:
            return x
        size = x[0].numel()
        if self.masks is None or x.shape[0] != len(self.masks) or self.cursor + size > self.masks.shape[1]:
            raise RuntimeError("dropout call outside the recorded sites; record() a pass of the same model first")
        mask = self.masks[:, self.cursor:self.cursor + size].view(x.shape)
        self.cursor += size
        return x.mul_(mask).div_(self.keep) if inplace else x * mask / self.keep


def default_chunk(device) -> int:
    """Passes per batch: measured flat per pass on CPU up to ~4-8 then slower (cache); GPUs gain from more."""
    return 25 if torch.device(device).type == "cuda" else 4


def _check(samples: int, p: float, chunk: int) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be 1..{MAX_SAMPLES}, got {samples}")
    if not 0.0 <= p <= MAX_P:
        raise ValueError(f"dropout probability must be 0..{MAX_P}, got {p}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")


_COPIES: "weakref.WeakKeyDictionary[nn.Module, OrderedDict[float, nn.Module]]" = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()
os.register_at_fork(after_in_child=lambda: globals().update(_COPIES_LOCK=threading.Lock()))


def _transformer_copy(loaded, p: float) -> nn.Module:
    """The private transformer of `loaded` at rate p, in train mode: built once per (model, p) (a
    copy costs about one GPU forward) and then shared read-only, since nothing changes it after;
    the last 4 rates per model are kept. SDPA: sampling needs no attention maps, and fused
    attention is faster than eager and never holds the [chunk, heads, S, S] weights."""
    with _COPIES_LOCK:
        copies = _COPIES.setdefault(loaded.model, OrderedDict())
        private = copies.get(p)
    if private is None:
        fast = _fast(loaded)
        private = _private_copy(_Transformer(loaded.model) if fast else _WholeModel(loaded.model), p,
                                attention="sdpa" if fast else None)
        with _COPIES_LOCK:
            private = copies.setdefault(p, private)
            while len(copies) > 4:
                copies.popitem(last=False)
    return private


def _labels(logits: torch.Tensor, no_object: bool = True) -> torch.Tensor:
    """The deterministic label of every slot: top real class (DETR: no-object is the last)."""
    return logits.float()[..., :-1].argmax(-1) if no_object else logits.float().argmax(-1)


def _probs(logits: torch.Tensor, no_object: bool = True) -> torch.Tensor:
    """DETR: softmax over the classes incl. no-object; sigmoid heads: each class's own sigmoid."""
    return logits.float().softmax(-1) if no_object else logits.float().sigmoid()


def _sample(private: nn.Module, features, samples: int, seed: int, chunk: int,
            progress: Progress | None, match: bool = False, no_object: bool = True, so_far=None):
    """(deterministic (logits, boxes), [T, Q, C(+1)] logits, [T, Q, 4] boxes, [T, Q] matched slots or
    None) of the private copy; `features`: BackboneFeatures (`_Transformer`) or pixel values (`_WholeModel`).
    `so_far`, if given, gets the same four for the samples drawn so far after every chunk but the last."""
    device = features.embeds.device if isinstance(features, BackboneFeatures) else features.device
    noise = _SampleDropout(seed, samples, device)
    with noise.record():
        det = private(features, 1)
    matching = Matching(det[1][0], _labels(det[0][0], no_object)) if match else None
    logits, boxes = [], []
    with matching or nullcontext():
        for start in range(0, samples, chunk):
            rows = list(range(start, min(samples, start + chunk)))
            noise.draw(rows)
            with noise:
                out = private(features, len(rows))
            logits.append(out[0])
            boxes.append(out[1])
            if matching:
                matching.add(_probs(out[0], no_object), out[1])
            if progress:
                progress(rows[-1] + 1, samples)
            if so_far and rows[-1] + 1 < samples:
                so_far(det, torch.cat(logits), torch.cat(boxes), matching.slots(close=False) if matching else None)
    return det, torch.cat(logits), torch.cat(boxes), matching.slots() if matching else None


@torch.no_grad()
def sample_from_features(loaded, features: BackboneFeatures, samples: int = 30, p: float = 0.1, seed: int = 0,
                         chunk: int | None = None, progress: Progress | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, Q, C+1] logits and [T, Q, 4] normalised cxcywh boxes of T dropout passes, `chunk` at a time."""
    chunk = default_chunk(features.embeds.device) if chunk is None else chunk
    _check(samples, p, chunk)
    _, logits, boxes, _ = _sample(_transformer_copy(loaded, p), features, samples, seed, chunk, progress)
    return logits, boxes


# ---- statistics (pure numpy) -------------------------------------------------------------------

def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) over the last axis, with 0 log 0 = 0."""
    return -np.sum(probs * np.log(np.where(probs > 0, probs, 1.0)), -1)


def uncertainty(probs: np.ndarray) -> dict[str, np.ndarray]:
    """probs [T, ..., K] (softmax incl. no-object as the last class) -> arrays [...]:

    entropy = H[mean_t p_t]; mutual_information = H[mean_t p_t] - mean_t H[p_t];
    variation_ratio = 1 - (count of the modal top real class) / T.
    """
    probs = np.asarray(probs, dtype=np.float64)
    entropy = _entropy(probs.mean(0))
    top = probs[..., :-1].argmax(-1)
    counts = (top[..., None] == np.arange(probs.shape[-1] - 1)).sum(0)
    return {"entropy": entropy,
            "mutual_information": np.maximum(entropy - _entropy(probs).mean(0), 0.0),
            "variation_ratio": 1.0 - counts.max(-1) / probs.shape[0],
            "top_labels": top}


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    return _entropy(np.stack([p, 1.0 - p], -1))


def uncertainty_sigmoid(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Sigmoid heads: probs [T, Q, K] (each class's own sigmoid, no no-object class), labels [Q] the
    deterministic labels. A slot's label is present or not, a Bernoulli: entropy = H_b[mean_t s_t],
    mutual_information = H_b[mean_t s_t] - mean_t H_b[s_t] (nats), s_t = sample t's probability of
    the label; variation_ratio = 1 - (count of the modal top class) / T."""
    probs = np.asarray(probs, dtype=np.float64)
    s = np.take_along_axis(probs, np.asarray(labels)[None, :, None], -1)[..., 0]
    entropy = _binary_entropy(s.mean(0))
    top = probs.argmax(-1)
    counts = (top[..., None] == np.arange(probs.shape[-1])).sum(0)
    return {"entropy": entropy, "mutual_information": np.maximum(entropy - _binary_entropy(s).mean(0), 0.0),
            "variation_ratio": 1.0 - counts.max(-1) / probs.shape[0], "top_labels": top}


def above_threshold_fraction(scores, threshold: float) -> float:
    return float(np.mean(np.asarray(scores) >= threshold))


def to_pixels(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised cxcywh -> x0, y0, x1, y1 in pixels of an image of size (width, height)."""
    w, h = size
    cx, cy, bw, bh = np.moveaxis(np.asarray(boxes, dtype=np.float64), -1, 0)
    return np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cxcy, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1)


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU of xyxy boxes [..., N, 4] x [..., M, 4] -> [..., N, M]."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    area_a, area_b = (a[..., 2:] - a[..., :2]).prod(-1), (b[..., 2:] - b[..., :2]).prod(-1)
    inter = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return inter / union.clamp(min=1e-12) - (hull - union) / hull.clamp(min=1e-12)


class Matching:
    """Hungarian matching of each sample's slots to the deterministic slots with DETR's cost,
    chunk by chunk as samples arrive: Cost(i, j) = -p_j(label_i) + 5 L1(box_i, box_j)
    - 2 GIoU(box_i, box_j), built on the samples' device; the assignments run on CPU threads
    (scipy releases the GIL; near-tied costs of an untrained model take ~1 ms a sample) while the
    next chunk runs, so on a GPU they cost no extra time.

    det_boxes [Q, 4] normalised cxcywh, labels [Q] the deterministic labels; `add(probs [n, Q, K],
    boxes [n, Q, 4])` per chunk; `slots()` -> [T, Q]: the sample slot matched to each deterministic slot.
    """

    def __init__(self, det_boxes: torch.Tensor, labels: torch.Tensor):
        self.det_boxes, self.labels, self.pending = det_boxes.float(), labels, []
        self.pool = ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, 8)))

    def add(self, probs: torch.Tensor, boxes: torch.Tensor) -> None:
        w_class, w_l1, w_giou = MATCH_WEIGHTS
        boxes = boxes.float()
        cost = (-w_class * probs[:, :, self.labels].transpose(1, 2)
                + w_l1 * torch.cdist(self.det_boxes.expand(len(boxes), -1, -1).contiguous(), boxes, p=1)
                - w_giou * _giou(_xyxy(self.det_boxes)[None], _xyxy(boxes))).cpu().numpy()  # [n, Q det, Q sample]
        self.pending += [self.pool.submit(linear_sum_assignment, c) for c in cost]

    def slots(self, close: bool = True) -> np.ndarray:
        """close=False: the samples added so far, and more may be added after."""
        try:
            done = [f.result() for f in self.pending]
        finally:
            if close:
                self.close()
        slots = np.empty((len(done), len(self.labels)), dtype=np.int64)
        for t, (rows, cols) in enumerate(done):
            slots[t, rows] = cols
        return slots

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type:  # stopped (an error, a cancel): drop the queued assignments
            self.close()


def match_slots(det_boxes: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    """[T, Q] matched slots of all samples at once (see Matching)."""
    matching = Matching(det_boxes, labels)
    matching.add(probs, boxes)
    return matching.slots()


def _identity_stats(probs: np.ndarray, boxes_px: np.ndarray, labels: np.ndarray, threshold: float,
                    no_object: bool = True) -> dict:
    """Per-slot statistics of samples already aligned to the deterministic slots: arrays over Q."""
    scores = np.take_along_axis(probs, labels[None, :, None], -1)[..., 0]  # [T, Q]
    centred = boxes_px - boxes_px.mean(0)
    return {"scores": scores.T, "score_mean": scores.mean(0), "score_std": scores.std(0),
            "above_threshold_fraction": (scores >= threshold).mean(0),
            "box_mean": boxes_px.mean(0), "box_std": boxes_px.std(0),
            "box_cov": np.einsum("tqi,tqj->qij", centred, centred) / probs.shape[0],
            "sampled_boxes": boxes_px.transpose(1, 0, 2),
            **(uncertainty(probs) if no_object else uncertainty_sigmoid(probs, labels))}


def _floats(a) -> list:
    return np.asarray(a, dtype=np.float64).round(6).tolist()


def summarize(det_logits: torch.Tensor, det_boxes: torch.Tensor, logits: torch.Tensor, boxes: torch.Tensor,
              image_size: tuple[int, int], id2label: dict, threshold: float = 0.7,
              slots: np.ndarray | None = None, no_object: bool = True) -> list[dict]:
    """Per-query statistics (all Q slots, in slot order) of T samples against the deterministic pass.

    det_logits [Q, C+1], det_boxes [Q, 4], logits [T, Q, C+1], boxes [T, Q, 4] (normalised cxcywh);
    slots: the matching if already done (see Matching), else it is done here; no_object: DETR's
    softmax head (else a sigmoid head: scores are the label's sigmoid, see `uncertainty_sigmoid`).
    """
    detections = postprocess(det_logits, det_boxes, image_size, id2label, no_object=no_object)
    labels = _labels(det_logits, no_object)
    probs = _probs(logits, no_object)
    slots = match_slots(det_boxes, labels, probs, boxes) if slots is None else slots
    labels, probs = labels.cpu().numpy(), probs.cpu().numpy().astype(np.float64)
    norm = boxes.float().cpu().numpy().astype(np.float64)
    t_idx = np.arange(probs.shape[0])[:, None]
    by_slot = _identity_stats(probs, to_pixels(norm, image_size), labels, threshold, no_object)
    matched = _identity_stats(probs[t_idx, slots], to_pixels(norm[t_idx, slots], image_size), labels, threshold,
                              no_object)
    swaps = (slots != np.arange(slots.shape[1])).mean(0)

    def per_slot(stats: dict) -> list[dict]:
        lists = {k: _floats(v) for k, v in stats.items() if k != "top_labels"}  # one conversion for all slots
        out = []
        for q, top in enumerate(stats["top_labels"].T):
            names, counts = np.unique(top, return_counts=True)
            out.append({**{k: v[q] for k, v in lists.items()},
                        "label_counts": {id2label[int(n)]: int(c) for n, c in zip(names, counts)}})
        return out

    by_slot, matched = per_slot(by_slot), per_slot(matched)
    for det in detections:
        q = det["index"]
        det.update(label_id=int(labels[q]), **by_slot[q], slot_swap_fraction=float(swaps[q]))
        det["matched"] = {**matched[q], "slots": slots[:, q].tolist()}
    return detections


def _result(loaded, det, logits, boxes, slots, image_size, samples, p, seed, threshold) -> dict:
    return {"samples": samples, "dropout": p, "trained_dropout": trained_dropout(loaded), "seed": seed,
            "threshold": threshold,
            "detections": summarize(det[0][0], det[1][0], logits, boxes, image_size, loaded.id2label, threshold,
                                    slots, no_object=loaded.family.no_object)}


def mc_dropout(loaded, pixel_values: torch.Tensor, image_size: tuple[int, int], samples: int = 30,
               p: float | None = None, seed: int = 0, threshold: float = 0.7, chunk: int | None = None,
               progress: Progress | None = None, features: BackboneFeatures | None = None) -> dict:
    """MC-Dropout statistics of every query slot of one image: a JSON-able dict.

    pixel_values [1, 3, H, W]; image_size = original (width, height) for pixel boxes; p = None
    uses the trained rate; chunk = passes per batch (bounds memory; None: `default_chunk`);
    `features` (from `backbone_features`) skips the backbone (DETR; the other families run
    their whole model per sample, and sigmoid heads get `uncertainty_sigmoid`'s statistics).
    Returns {"samples", "dropout", "trained_dropout", "seed", "threshold", "detections": [per
    slot: index, label, label_id, score, box (deterministic), scores, score_mean, score_std,
    entropy, mutual_information, variation_ratio, label_counts, box_mean, box_std, box_cov,
    above_threshold_fraction, sampled_boxes, slot_swap_fraction, matched: {same keys + slots}]}.
    Results as they come: a Reporter's `partial` (core.methods.explanation) gets, after every chunk
    but the last, the result of the samples so far; a sample's masks depend on (seed, sample index)
    only, so that is exactly the result of a run of that many samples, and the final result is the
    same with or without it.
    """
    p = trained_dropout(loaded) if p is None else float(p)
    chunk = default_chunk(pixel_values.device) if chunk is None else chunk
    _check(samples, p, chunk)
    if _fast(loaded):
        inputs = features if features is not None else backbone_features(loaded, pixel_values)
    else:
        inputs = pixel_values
    partial, so_far = partial_of(progress), None
    if partial:
        def so_far(det, logits, boxes, slots):
            partial(_result(loaded, det, logits, boxes, slots, image_size, len(logits), p, seed, threshold))
    with torch.no_grad():
        det, logits, boxes, slots = _sample(_transformer_copy(loaded, p), inputs, samples, seed, chunk, progress,
                                            match=True, no_object=loaded.family.no_object, so_far=so_far)
    return _result(loaded, det, logits, boxes, slots, image_size, samples, p, seed, threshold)


@torch.no_grad()
def mc_dropout_naive(loaded, pixel_values: torch.Tensor, image_size: tuple[int, int], samples: int = 30,
                     p: float | None = None, seed: int = 0, threshold: float = 0.7,
                     progress: Progress | None = None) -> dict:
    """Reference: a private copy of the whole model in train mode, T full forwards of batch 1.

    Same masks as `mc_dropout` for the same seed (same per-sample generators and dropout sites),
    so the two agree.
    """
    p = trained_dropout(loaded) if p is None else float(p)
    _check(samples, p, 1)
    private = _private_copy(loaded.model, p)
    noise = _SampleDropout(seed, samples, pixel_values.device)
    with noise.record():
        det = private(pixel_values)
    logits, boxes = [], []
    no_object = loaded.family.no_object
    with Matching(det.pred_boxes[0], _labels(det.logits[0], no_object)) as matching:
        for t in range(samples):
            noise.draw([t])
            with noise:
                out = private(pixel_values)
            logits.append(out.logits)
            boxes.append(out.pred_boxes)
            matching.add(_probs(out.logits, no_object), out.pred_boxes)
            if progress:
                progress(t + 1, samples)
    return _result(loaded, (det.logits, det.pred_boxes), torch.cat(logits), torch.cat(boxes), matching.slots(),
                   image_size, samples, p, seed, threshold)

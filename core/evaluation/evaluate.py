"""Evaluate a model on a labelled dataset: COCO AP, calibration (plain and MC-Dropout), and how
far each explanation method can be trusted over many detections.

`evaluate(loaded, dataset, ...)` runs image by image; each image's results (detections; MC-Dropout
means; each method's explanation scores) are cached on disk under `cache_dir`, keyed by the
model's weights, the image file (path, size, mtime) and the settings that change them, so an
interrupted run resumes where it stopped and a rerun with another method recomputes only that.

Explanation quality is measured on the "explained" detections of each image: confidence >=
`explain_threshold`, a true positive (greedy match, IoU >= 0.5, same class), at most `per_image`
of them, best first; each method's map (the method's declared default parameters) is scored:
- pointing_game: 1 if the map's maximum (resized to the image) is inside the true box, else 0;
- energy_pointing: share of the map's positive mass inside the true box;
- deletion_auc / insertion_auc: core/evaluation/faithfulness.py with the "matched" score (lower /
  higher is better);
- sensitivity_max: captum.metrics.sensitivity_max, the largest relative change
  ||map(x + e) - map(x)|| / ||map(x)|| over `sensitivity_samples` draws of uniform noise e in
  [-r, r] (r = `sensitivity_radius`, in the model's normalised input units; the same draws for
  every method); lower is more robust.
Each summary is the mean over explained detections with a 95% percentile bootstrap interval
(scipy.stats.bootstrap, `bootstrap` resamples); nan values (a map without positive mass, a
constant map) are left out and counted in "n".

Result (JSON-able; the file `evaluation.json` holds all of it but "rows"):
- model, dataset {name, images, categories (evaluated names), unmatched_categories (dataset names
  the model lacks), model_only_labels (model labels the dataset lacks)}, settings {every PARAMS
  value, methods}
- ap, ap50, ap75, ap_small, ap_medium, ap_large, ar100, per_class_ap, per_class_ap50 (COCO;
  core/evaluation/coco.py)
- threshold, d_ece, la_ece, oce, lrp, detections (count at the threshold), reliability (10 bins:
  low, high, count, confidence, precision), by_threshold {thresholds, d_ece, la_ece, oce, lrp,
  detections} (core/evaluation/calibration.py)
- mc (only with samples > 0): samples, dropout, seed, d_ece, la_ece, oce, lrp, detections,
  reliability, by_threshold (the same, on MC-Dropout mean confidences)
- explanations: method -> {label, detections, and per metric (pointing_game, energy_pointing,
  deletion_auc, insertion_auc, sensitivity_max) {mean, low, high, n}}
- explained: one row per explained detection and method (image_id, file_name, query, label, score,
  truth_id, iou, method, the five metrics)
- worst_calibrated: up to 10 detections above the threshold with the largest |confidence - TP|
  (image_id, file_name, query, label, score, mc_score, tp, iou, best_iou); worst_explained: up to 10 rows of
  "explained" with the lowest energy_pointing
- rows: one per detection with plain (or MC) confidence >= 0.01 (what the CSV holds): image_id,
  file_name, query, label, score, mc_score, mc_std, x0, y0, x1, y1, tp (true positive at IoU >= 0.5,
  greedy matching), iou (with the matched true object; 0 for a false positive), best_iou (highest
  IoU with a true object of its class: a false positive with a high one is a duplicate), truth_id
- images, images_cached (images whose detections came from the cache), seconds {total, images,
  coco, calibration}
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from core import params as P
from core.evaluation import calibration as cal
from core.evaluation.coco import Dataset, coco_ap
from core.evaluation.metrics import box_iou
from core.methods.explanation import Progress

CSV_MIN_SCORE = 0.01
WORST = 10
METRICS = ("pointing_game", "energy_pointing", "deletion_auc", "insertion_auc", "sensitivity_max")

PARAMS = (
    P.Param("limit", "int", None, "Evaluate only the first N images of the dataset.", label="Images", min=1,
            optional=True),
    P.Param("samples", "int", 0, "MC-Dropout samples per image (0: no MC-Dropout calibration).",
            label="MC samples", min=0, max=100),
    P.MC_DROPOUT,
    P.Param("seed", "int", 0, "Seed of the dropout masks, the sensitivity noise and the bootstrap.", label="Seed",
            min=0, max=2**31 - 1),
    P.Param("threshold", "float", 0.3, "Calibration is measured on detections with confidence > this.",
            label="Calibration threshold", min=0.0, max=0.99),
    P.Param("explain_threshold", "float", 0.7, "Explained detections: true positives with confidence >= this.",
            label="Explained confidence", min=0.0, max=1.0),
    P.Param("per_image", "int", 1, "Explained detections per image (the most confident first).",
            label="Explained per image", min=1, max=100),
    P.Param("sensitivity_samples", "int", 10, "Noisy copies of the image for each sensitivity_max.",
            label="Sensitivity samples", min=1, max=100),
    P.Param("sensitivity_radius", "float", 0.02, "Noise radius of sensitivity_max (model's normalised input units).",
            label="Sensitivity radius", min=0.0, max=1.0),
    P.Param("bootstrap", "int", 1000, "Bootstrap resamples of each 95% interval.", label="Bootstrap resamples",
            min=100, max=100000),
)


def check_methods(methods) -> list[str]:
    """Registered method names, in the order given, or ParamError naming the choices."""
    from core.methods.registry import METHODS
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods or ()) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise P.ParamError(f"Unknown method(s): {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    return list(dict.fromkeys(names))


# ---- per-image cache ---------------------------------------------------------------------------

def model_fingerprint(loaded) -> str:
    """Name + a hash of the class head's weights: a retrained model saved at the same path differs."""
    weight = loaded.model.class_labels_classifier.weight.detach().float().cpu().numpy()
    return f"{loaded.name}:{hashlib.sha1(weight.tobytes()).hexdigest()[:16]}"


class _Cache:
    """Values on disk by key (a JSON-able dict): "npz" (dict of arrays) or "json", written
    atomically; no directory: nothing is kept."""

    def __init__(self, root):
        self.root = Path(root) if root is not None else None

    def _path(self, key: dict, kind: str) -> Path:
        return self.root / f"{hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()}.{kind}"

    def get(self, key: dict, kind: str):
        if self.root is None or not self._path(key, kind).exists():
            return None
        try:
            if kind == "npz":
                with np.load(self._path(key, kind)) as data:
                    return {k: data[k] for k in data.files}
            return json.loads(self._path(key, kind).read_text())
        except (OSError, ValueError):
            return None  # a torn file from an older crash: recompute

    def put(self, key: dict, kind: str, value) -> None:
        if self.root is None:
            return
        path = self._path(key, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if kind == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, **value)
        else:
            tmp.write_text(json.dumps(value))
        os.replace(tmp, path)

    def cached(self, key: dict, compute, kind: str):
        value = self.get(key, kind)
        if value is None:
            value = compute()
            self.put(key, kind, value)
        return value


# ---- one image ---------------------------------------------------------------------------------

def _pixels(boxes: torch.Tensor, size) -> np.ndarray:
    w, h = size
    cx, cy, bw, bh = boxes.float().cpu().unbind(-1)
    return torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1).numpy()


def default_batch(device) -> tuple[int, int]:
    """(images per chunk, input pixels per forward): on CPU 8 demo images (128 px) per call ran 2x
    faster per image than one; the pixel budget keeps large inputs (DETR-R50's 800 x 1066) to a few
    per call, where batching gains little and costs memory."""
    return (32, 2**24) if torch.device(device).type == "cuda" else (8, 2**21)


@torch.inference_mode()
def detections(loaded, pixel_values: torch.Tensor, sizes) -> list[dict]:
    """Per image of a [B, 3, H, W] batch of one input size: {"probs" [Q, C] real-class
    probabilities (softmax incl. no-object), "boxes" [Q, 4] xyxy pixels of its (width, height)}."""
    out = loaded.model(pixel_values=pixel_values)
    probs = out.logits.float().softmax(-1)[..., :-1].cpu().numpy()
    return [{"probs": probs[b], "boxes": _pixels(out.pred_boxes[b], size)} for b, size in enumerate(sizes)]


def _detect_chunk(loaded, data: Dataset, chunk: list[dict], cache: _Cache, keys: list[dict],
                  pixels: int) -> tuple[list, dict]:
    """(detections of each image of the chunk, pixel values of those computed here by image id):
    cached ones from the cache, the others batched by input size, up to `pixels` input pixels a batch."""
    found = [cache.get({**k, "part": "detections"}, "npz") for k in keys]
    pvs = {e["id"]: loaded.pixel_values(data.load(e)) for e, f in zip(chunk, found) if f is None}
    groups: dict[tuple, list[int]] = {}
    for k, e in enumerate(chunk):
        if found[k] is None:
            groups.setdefault(tuple(pvs[e["id"]].shape), []).append(k)
    for shape, group in groups.items():
        step = max(1, pixels // (shape[-1] * shape[-2]))
        for ks in (group[i:i + step] for i in range(0, len(group), step)):
            batch = torch.cat([pvs[chunk[k]["id"]] for k in ks])
            for k, det in zip(ks, detections(loaded, batch, [(chunk[k]["width"], chunk[k]["height"]) for k in ks])):
                found[k] = det
                cache.put({**keys[k], "part": "detections"}, "npz", det)
    return found, pvs


def mc_means(loaded, pixel_values: torch.Tensor, labels: np.ndarray, samples: int, p: float, seed: int) -> dict:
    """{"mc_probs" [Q, C] mean real-class probabilities over T dropout samples, "mc_std" [Q] spread
    of the probability of each slot's deterministic label} (core/models/mc_dropout.py)."""
    from core.models.mc_dropout import backbone_features, sample_from_features
    logits, _ = sample_from_features(loaded, backbone_features(loaded, pixel_values), samples, p, seed)
    probs = logits.float().softmax(-1)[..., :-1].cpu().numpy()  # [T, Q, C]
    own = probs[:, np.arange(probs.shape[1]), labels]  # [T, Q]
    return {"mc_probs": probs.mean(0), "mc_std": own.std(0)}


def pointing_game(heatmap, box, size) -> float:
    """1.0 if the map's maximum, resized to the image (width, height), falls in box (x0, y0, x1,
    y1 pixels; pixel centres), else 0.0; nan for a constant map (no maximum to point with)."""
    from core.evaluation.faithfulness import resize_map
    width, height = size
    m = resize_map(heatmap, height, width)
    if float(m.max()) == float(m.min()):
        return float("nan")
    y, x = divmod(int(torch.argmax(m)), width)
    return float(box[0] <= x + 0.5 < box[2] and box[1] <= y + 0.5 < box[3])


class _Maps:
    """Each method family's maps, computed once per (family, params, input): the original image's
    maps and the sensitivity copies are shared by the methods of one family."""

    def __init__(self, loaded, query: int, params: dict[str, dict]):
        self.loaded, self.query, self.params, self.memo = loaded, query, params, {}

    def __call__(self, name: str, x: torch.Tensor) -> np.ndarray:
        from core.methods.registry import METHODS
        spec, params = METHODS[name], self.params[name]
        key = (spec.family, json.dumps(params, sort_keys=True, default=str),
               hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest())
        if key not in self.memo:
            with torch.enable_grad():
                self.memo[key] = spec.compute(self.loaded, x, self.query, params)
        return np.asarray(self.memo[key][name].heatmap, dtype=np.float32)


def sensitivity(maps: _Maps, name: str, pixel_values: torch.Tensor, samples: int, radius: float, seed: int) -> float:
    """captum's sensitivity_max of one method's map, with noise from a private generator (the same
    draws for every method with the same seed)."""
    from captum.metrics import sensitivity_max

    def explain(inputs):  # captum passes a tuple once (the original) and expects a tuple back
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        out = torch.stack([torch.from_numpy(maps(name, row[None])) for row in x])
        return (out,) if isinstance(inputs, tuple) else out

    def perturb(inputs, r):
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        generator = torch.Generator().manual_seed(seed)
        return x + (torch.rand(x.shape, generator=generator) * 2 * r - r).to(x.device, x.dtype)

    return float(sensitivity_max(explain, pixel_values, perturb_func=perturb, perturb_radius=radius,
                                 n_perturb_samples=samples)[0])


def explain_scores(loaded, pixel_values, query: int, truth_box, size, name: str, maps: _Maps, settings: dict,
                   seed: int) -> dict:
    """The five metrics of one method's map for one detection against its true box."""
    from core.evaluation.faithfulness import faithfulness
    heatmap = maps(name, pixel_values)
    f = faithfulness(loaded, pixel_values, query, heatmap, gt_box=truth_box, image_size=size)
    return {"pointing_game": pointing_game(heatmap, truth_box, size), "energy_pointing": f["pointing_game_gt"],
            "deletion_auc": f["deletion_auc"]["matched"], "insertion_auc": f["insertion_auc"]["matched"],
            "sensitivity_max": sensitivity(maps, name, pixel_values, settings["sensitivity_samples"],
                                           settings["sensitivity_radius"], seed)}


def explained_detections(det: dict, truth: list[dict], threshold: float,
                         per_image: int) -> list[tuple[int, dict, float]]:
    """(query, true object, IoU) of the detections to explain: true positives with confidence >=
    threshold, best first, at most per_image."""
    conf, labels = det["probs"].max(1), det["probs"].argmax(1)
    matched, ious = cal.greedy_match(det["boxes"], labels, conf, [t["box"] for t in truth],
                                     [t["label_id"] for t in truth])
    picks = [q for q in np.argsort(-conf, kind="stable") if conf[q] >= threshold and matched[q] >= 0]
    return [(int(q), truth[matched[q]], float(ious[q])) for q in picks[:per_image]]


# ---- summaries ---------------------------------------------------------------------------------

def interval(values, resamples: int = 1000, seed: int = 0) -> dict:
    """{"mean", "low", "high", "n"}: mean of the finite values and its 95% percentile bootstrap
    interval (low = high = mean when all values agree; None with fewer than 2 values)."""
    from scipy.stats import bootstrap
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    if np.all(v == v[0]):
        return {"mean": mean, "low": mean, "high": mean, "n": len(v)}
    ci = bootstrap((v,), np.mean, confidence_level=0.95, n_resamples=resamples, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return {"mean": mean, "low": float(ci.low), "high": float(ci.high), "n": len(v)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


# ---- the run -----------------------------------------------------------------------------------

def evaluate(loaded, dataset: Dataset, *, methods=(), progress: Progress | None = None, cache_dir=None,
             **values) -> dict:
    """Evaluate `loaded` on `dataset` (core/evaluation/coco.py); `values` are PARAMS (limit, samples,
    dropout, seed, threshold, ...; ParamError when out of range), `methods` registered method names
    whose explanations are scored. progress(done, total) after each image and each method of it.
    Returns the dict described in this module's docstring."""
    from core.methods.registry import METHODS, context
    from core.models.mc_dropout import trained_dropout
    start = time.perf_counter()
    s = P.validate(PARAMS, values)
    methods = check_methods(methods)
    method_params = {name: METHODS[name].validate({}, context(loaded)) for name in methods}  # declared defaults
    dropout = trained_dropout(loaded) if s["dropout"] is None else s["dropout"]
    data = dataset.limited(s["limit"])
    id2label = loaded.id2label
    evaluated = np.array(sorted(data.label_ids.values()))
    fingerprint = model_fingerprint(loaded)
    cache, steps, (batch, pixels) = _Cache(cache_dir), 1 + len(methods), default_batch(loaded.device)
    images, rows, explained, det_rows, cached = [], [], [], [], 0
    for first in range(0, len(data.images), batch):
        chunk = data.images[first:first + batch]
        keys = [{"model": fingerprint, "image": e["key"]} for e in chunk]
        dets, pvs = _detect_chunk(loaded, data, chunk, cache, keys, pixels)
        cached += len(chunk) - len(pvs)
        for n, entry, key, det in zip(range(first, first + len(chunk)), chunk, keys, dets):
            def pixel_values(entry=entry):
                if entry["id"] not in pvs:
                    pvs[entry["id"]] = loaded.pixel_values(data.load(entry))
                return pvs[entry["id"]]

            truth = data.truth(entry["id"])
            conf, labels = det["probs"].max(1), det["probs"].argmax(1)
            im = {"boxes": det["boxes"].astype(np.float64), "labels": labels, "conf": conf, "probs": det["probs"]}
            if s["samples"]:
                mc = cache.cached({**key, "part": "mc", "samples": s["samples"], "dropout": dropout, "seed": s["seed"]},
                                  lambda: mc_means(loaded, pixel_values(), labels, s["samples"], dropout, s["seed"]),
                                  "npz")
                im.update(mc_probs=mc["mc_probs"], mc_conf=mc["mc_probs"][np.arange(len(labels)), labels],
                          mc_std=mc["mc_std"])
            keep = np.isin(labels, evaluated)  # classes the dataset does not annotate are out of every metric
            det_rows.append(np.column_stack([np.full(keep.sum(), entry["id"]), im["boxes"][keep], conf[keep],
                                             labels[keep]]))
            im = {k: v[keep] for k, v in im.items()}
            im.update(truth_boxes=np.array([t["box"] for t in truth], dtype=np.float64).reshape(-1, 4),
                      truth_labels=np.array([t["label_id"] for t in truth], dtype=np.int64))
            images.append(im)
            rows += _rows(entry, im, np.flatnonzero(keep), truth, id2label)
            if progress:
                progress(n * steps + 1, len(data.images) * steps)
            if not methods:
                continue
            picks = explained_detections(det, truth, s["explain_threshold"], s["per_image"])
            maps = {}
            for m, name in enumerate(methods):
                def run(name=name):
                    return [{"query": query, "truth_id": obj["id"], "iou": iou,
                             **explain_scores(loaded, pixel_values(), query, obj["box"],
                                              (entry["width"], entry["height"]), name,
                                              maps.setdefault(query, _Maps(loaded, query, method_params)), s,
                                              s["seed"] + query)}
                            for query, obj, iou in picks]
                xkey = {**key, "part": "explain", "method": name, "params": method_params[name],
                        "picks": [(q, o["id"]) for q, o, _ in picks],
                        **{k: s[k] for k in ("sensitivity_samples", "sensitivity_radius", "seed")}}
                for r in cache.cached(xkey, run, "json"):
                    explained.append({"image_id": entry["id"], "file_name": entry["file_name"], "query": r["query"],
                                      "label": id2label[int(labels[r["query"]])], "score": float(conf[r["query"]]),
                                      "truth_id": r["truth_id"], "iou": r["iou"], "method": name,
                                      **{k: r[k] for k in METRICS}})
                if progress:
                    progress(n * steps + 2 + m, len(data.images) * steps)
            pvs.pop(entry["id"], None)
    t_images = time.perf_counter() - start

    t = time.perf_counter()
    result = {"model": loaded.name,
              "dataset": {"name": data.name, "images": len(data.images), "categories": list(data.label_ids),
                          "unmatched_categories": data.unmatched, "model_only_labels": data.model_only},
              "settings": {**s, "dropout": dropout if s["samples"] else s["dropout"], "methods": methods},
              **coco_ap(data, np.concatenate(det_rows) if det_rows else np.zeros((0, 7)))}
    t_coco = time.perf_counter() - t
    t = time.perf_counter()
    result.update(cal.calibration(images, s["threshold"], "conf"))
    if s["samples"]:
        result["mc"] = {"samples": s["samples"], "dropout": dropout, "seed": s["seed"],
                        **cal.calibration(images, s["threshold"], "mc_conf")}
    t_cal = time.perf_counter() - t
    result["explanations"] = _explanation_summary(explained, methods, s)
    result["explained"] = explained
    above = [r for r in rows if r["score"] > s["threshold"]]
    result["worst_calibrated"] = sorted(above, key=lambda r: -abs(r["score"] - r["tp"]))[:WORST]
    result["worst_calibrated"] = [{k: r[k] for k in ("image_id", "file_name", "query", "label", "score", "mc_score",
                                                     "tp", "iou", "best_iou")} for r in result["worst_calibrated"]]
    finite = [r for r in explained if r["energy_pointing"] is not None and math.isfinite(r["energy_pointing"])]
    result["worst_explained"] = sorted(finite, key=lambda r: r["energy_pointing"])[:WORST]
    result["rows"] = rows
    result["images"], result["images_cached"] = len(data.images), cached
    result["seconds"] = {"total": time.perf_counter() - start, "images": t_images, "coco": t_coco,
                         "calibration": t_cal}
    return _jsonable(result)


def _rows(entry: dict, im: dict, slots: np.ndarray, truth: list[dict], id2label: dict) -> list[dict]:
    """CSV rows of one image: its detections with plain or MC confidence >= CSV_MIN_SCORE."""
    overlap = box_iou(im["boxes"], im["truth_boxes"]) * (im["labels"][:, None] == im["truth_labels"][None, :])
    best = overlap.max(1) if overlap.size else np.zeros(len(im["boxes"]))  # a duplicate: tp 0, best_iou high
    matched, ious = cal.greedy_match(im["boxes"], im["labels"], im["conf"], im["truth_boxes"], im["truth_labels"],
                                     ious=box_iou(im["boxes"], im["truth_boxes"]))
    shown = (im["conf"] >= CSV_MIN_SCORE) | (im.get("mc_conf", im["conf"]) >= CSV_MIN_SCORE)
    return [{"image_id": entry["id"], "file_name": entry["file_name"], "query": int(slots[k]),
             "label": id2label[int(im["labels"][k])], "score": float(im["conf"][k]),
             "mc_score": float(im["mc_conf"][k]) if "mc_conf" in im else None,
             "mc_std": float(im["mc_std"][k]) if "mc_std" in im else None,
             **dict(zip(("x0", "y0", "x1", "y1"), (round(float(v), 2) for v in im["boxes"][k]))),
             "tp": int(matched[k] >= 0), "iou": round(float(ious[k]), 4), "best_iou": round(float(best[k]), 4),
             "truth_id": truth[matched[k]]["id"] if matched[k] >= 0 else None} for k in np.flatnonzero(shown)]


def _explanation_summary(explained: list[dict], methods: list[str], s: dict) -> dict:
    from core.methods.registry import METHODS
    out = {}
    for name in methods:
        mine = [r for r in explained if r["method"] == name]
        out[name] = {"label": METHODS[name].label, "detections": len(mine),
                     **{k: interval([r[k] for r in mine], s["bootstrap"], s["seed"]) for k in METRICS}}
    return out


def summary(result: dict) -> dict:
    """What `--json` prints: the result without per-detection lists ("rows", "explained")."""
    return {k: v for k, v in result.items() if k not in ("rows", "explained")}

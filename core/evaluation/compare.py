"""Every explanation method for one detection, side by side, with faithfulness scores and a ranking.

Scores (core/evaluation/faithfulness.py) are computed on each method's raw map: deletion and insertion only
read the map's pixel ranking, the pointing game its positive mass. The shared normalisations
here are for display: they are monotone, so the picture ranks pixels as the scores do.
Deletion / insertion AUC use the "matched" confidence (the object stays detected by any slot of
its class over its box); the "slot" ones are kept alongside.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from core.memory import release_free_memory, saving_memory
from core.methods.explanation import Progress, Reporter, partial_of
from core.evaluation.faithfulness import STEPS, faithfulness_many
from core.evaluation.metrics import box_iou
from core.methods.gradcam import DEFAULT_VARIANT
from core.methods.integrated_gradients import DEFAULTS as IG_PARAMS_DEFAULTS
from core.evaluation.sanity import _ranks

# the measured default instance-specific CAM variant (core.methods.gradcam.DEFAULT_VARIANT) and ODAM
# beside the classic ones
METHODS = ("gradcam", "gradcam++", DEFAULT_VARIANT, "odam", "ig", "attention", "relevance")
# the IG settings a comparison takes from the explanation card (the declared defaults otherwise)
IG_DEFAULTS = {k: IG_PARAMS_DEFAULTS[k] for k in ("baseline", "steps", "sigma", "resolution")}
NORMALISATIONS = {
    "minmax": "per-map min-max: lowest value 0, highest 1",
    "p99": "per-map 99th percentile: positive values over the map's 99th percentile (top 1% saturate)",
    "rank": "rank: each pixel's percentile within its own map (what deletion / insertion see)",
}
# (score, higher is better): the columns of the ranking
CRITERIA = (("deletion_auc", False), ("insertion_auc", True), ("pointing_game", True), ("pointing_game_gt", True))


def default_methods(ig: dict | None = None, layer: str | None = None) -> dict[str, dict]:
    """name -> params for every method: the class score as target, `ig` over IG_DEFAULTS."""
    cam = {"layer": layer, "target": "class"}
    return {"gradcam": cam, "gradcam++": cam, DEFAULT_VARIANT: cam, "odam": {"layer": layer},
            "ig": {**IG_DEFAULTS, **(ig or {}), "target": "class"}, "attention": {}, "relevance": {"target": "class"}}


def normalise(heatmap, how: str = "minmax") -> np.ndarray:
    """A map in [0, 1] by one of NORMALISATIONS (a constant map gives zeros)."""
    m = np.asarray(heatmap, dtype=np.float64)
    if how == "minmax":
        span = m.max() - m.min()
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)
    if how == "p99":
        top = np.percentile(m, 99)
        top = top if top > 0 else m.max()
        return np.clip(m / top, 0, 1) if top > 0 else np.zeros_like(m)
    if how == "rank":
        return ((_ranks(m) - 1) / max(m.size - 1, 1)).reshape(m.shape)
    raise ValueError(f"unknown normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}")


def match_truth(box, label: str, truth: list[dict] | None, min_iou: float = 0.0) -> dict | None:
    """The true object of the same label with the best IoU over `box` (None if none exceeds min_iou)."""
    same = [t for t in truth or [] if t["label"] == label]
    if not same:
        return None
    ious = box_iou(np.asarray(box)[None], np.array([t["box"] for t in same]))[0]
    best = int(np.argmax(ious))
    return {**same[best], "iou": float(ious[best])} if ious[best] > min_iou else None


def explain_all(loaded, pixel_values, query: int, methods: dict[str, dict], progress: Progress | None = None,
                explain=None) -> tuple[dict, dict]:
    """(name -> Explanation, name -> seconds), in the order of `methods`. Methods of one family with
    the same params share one computation, and the CAM family, attention and relevance share one
    forward and one backward where they explain the class logit (core.methods.joint).
    `explain(name, params, progress)`, if given, is used instead (the service's cache, one
    computation per family). Those of the joint pass come first, then the other one-pass (`quick`)
    methods, so a Reporter's `partial`, called with name -> Explanation of the maps ready so far (in
    `methods` order) after each map, shows them before the slow ones (Integrated Gradients)."""
    from core.methods.registry import METHODS as REGISTRY  # the registry imports every method module
    full = {name: {**REGISTRY[name].defaults, **params} for name, params in methods.items()}
    key = {name: (REGISTRY[name].family, json.dumps(full[name], sort_keys=True, default=str)) for name in methods}
    done, out, seconds, partial = {}, {}, {}, partial_of(progress)
    if explain is None:
        start = time.perf_counter()
        shared = shared_pass(loaded, pixel_values, query, full, _sub_progress(progress, 0, len(methods)))
        done = {key[n]: result for n, result in shared.items()}
        seconds = {n: (time.perf_counter() - start) / len(shared) for n in shared}
    joint = joint_served(full)
    for k, name in enumerate(sorted(methods, key=lambda n: (n not in joint, not REGISTRY[n].quick))):  # stable
        sub = _sub_progress(progress, k, len(methods))
        start = time.perf_counter()
        if explain is not None:
            out[name] = explain(name, full[name], sub)
        else:
            if key[name] not in done:
                done[key[name]] = REGISTRY[name].compute(loaded, pixel_values, query, full[name], sub)
            out[name] = done[key[name]][name]
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        release_free_memory()  # one method's freed heap before the next method, or the curves (core/memory.py)
        if sub:
            sub(1, 1)  # a cached or shared map reports nothing itself
        if partial:
            partial({n: out[n] for n in methods if n in out})
    return {n: out[n] for n in methods}, {n: seconds[n] for n in methods}


def shared_pass(loaded, pixel_values, query: int, full: dict[str, dict], progress: Progress | None = None) -> dict:
    """name -> its family's results (method -> Explanation) for the methods that core.methods.joint
    serves in one forward and one backward: the class-logit CAM members with the first one's params,
    attention, and class-logit relevance; {} when that would serve fewer than two families (then
    each family's own computation is as cheap). `full`: name -> full (validated) params. A cache
    can store each result under its family's key as if each family had been computed alone."""
    from core.methods.joint import compute_joint
    members = _joint_members(full)
    if members is None:
        return {}
    cam, attention, relevance = members
    result = compute_joint(loaded, pixel_values, query, full[cam], attention and full[attention],
                           relevance and full[relevance], progress)
    return {n: result for n in joint_served(full)}


def _joint_members(full: dict[str, dict]) -> tuple | None:
    """(CAM, attention, relevance) method names the joint pass computes (None for a family not in
    it), or None when it would serve fewer than two families."""
    from core.methods.registry import METHODS as REGISTRY
    family = {n: REGISTRY[n].family for n in full}
    cam = next((n for n in full if family[n] == "cam" and full[n]["target"] == "class"), None)
    attention = next((n for n in full if family[n] == "attention"), None)
    relevance = next((n for n in full if family[n] == "relevance" and full[n]["target"] == "class"), None)
    return None if cam is None or (attention is None and relevance is None) else (cam, attention, relevance)


def joint_served(full: dict[str, dict]) -> list[str]:
    """The names among `full` (name -> full params) whose map the joint pass gives (shared_pass)."""
    from core.methods.registry import METHODS as REGISTRY
    members = _joint_members(full)
    if members is None:
        return []

    def key(n):
        return REGISTRY[n].family, json.dumps(full[n], sort_keys=True, default=str)
    served = {key(m) for m in members if m}
    return [n for n in full if key(n) in served]


def score_all(loaded, pixel_values, query: int, maps: dict, gt_box=None, image_size=None, steps: int = STEPS,
                progress: Progress | None = None) -> tuple[dict, dict]:
    """(name -> scores, name -> seconds): deletion / insertion AUC and pointing game(s) per map. All
    maps' perturbed images share batches, so each map is given an equal share of the time. A
    Reporter's `partial` gets name -> scores of the maps scored so far, as each completes."""
    start = time.perf_counter()
    partial = partial_of(progress)
    if partial:
        progress = Reporter(progress, lambda results: partial({n: _scores(r, gt_box) for n, r in results.items()}))
    results = faithfulness_many(loaded, pixel_values, query, maps, steps=steps, gt_box=gt_box, image_size=image_size,
                                progress=progress)
    scores = {name: _scores(r, gt_box) for name, r in results.items()}
    share = (time.perf_counter() - start) / max(len(maps), 1)
    return scores, {name: share for name in maps}


def _scores(r: dict, gt_box) -> dict:
    """A comparison's scores of one core.evaluation.faithfulness result (the "matched" AUCs first)."""
    scores = {"deletion_auc": r["deletion_auc"]["matched"], "insertion_auc": r["insertion_auc"]["matched"],
              "pointing_game": r["pointing_game"],
              "deletion_auc_slot": r["deletion_auc"]["slot"],
              "insertion_auc_slot": r["insertion_auc"]["slot"],
              "score": r["score"], "curves": r["curves"], "shape": r["shape"], "steps": r["steps"]}
    if gt_box is not None:
        scores["pointing_game_gt"] = r["pointing_game_gt"]
    return scores


def _rank_of(values: dict[str, float], higher_better: bool) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4): equal values share a rank; nan comes last."""
    key = {n: (math.inf if v is None or math.isnan(v) else (-v if higher_better else v)) for n, v in values.items()}
    return {n: 1 + sum(other < key[n] for other in key.values()) for n in key}


def rank(scores: dict[str, dict]) -> list[dict]:
    """Methods best first by their mean rank over the criteria present in every method's scores
    (CRITERIA): [{"method", "ranks": {criterion: rank}, "mean_rank"}]; ties keep the input order."""
    present = [(c, hb) for c, hb in CRITERIA if scores and all(c in s for s in scores.values())]
    ranks = {c: _rank_of({n: s[c] for n, s in scores.items()}, hb) for c, hb in present}
    rows = [{"method": n, "ranks": {c: ranks[c][n] for c, _ in present},
             "mean_rank": float(np.mean([ranks[c][n] for c, _ in present])) if present else float("nan")}
            for n in scores]
    return sorted(rows, key=lambda r: r["mean_rank"])


def compare(loaded, pixel_values, query: int, methods: dict[str, dict] | None = None, gt_box=None,
            image_size=None, steps: int = STEPS, progress: Progress | None = None, explain=None) -> dict:
    """Every method's map and scores for detection `query`, and their ranking.

    Returns {"query", "methods": {name: {"heatmap", "info", "params", "scores"}}, "ranking",
    "gt_box", "steps", "seconds": {"explain": {...}, "faithfulness": {...}, "total"}}.
    Progress: the maps are the first tenth of the work, the scores the rest (they are ~90% of it).
    Results as they come: a Reporter's `partial` (core.methods.explanation) gets the result so far,
    with "stage" added: "maps" after each map (methods so far, without "scores"), "scores" as each
    map's scores complete (every map, scores on those scored), "ranking" once with the final
    result. The final result is the same with or without it.
    """
    methods = methods or default_methods()
    start = time.perf_counter()
    head = {"query": int(query), "gt_box": None if gt_box is None else [float(v) for v in gt_box], "steps": steps}
    partial = partial_of(progress)

    def entry(name, e) -> dict:
        return {"heatmap": np.asarray(e.heatmap, dtype=np.float32), "info": e.info, "params": methods[name]}

    def maps_so_far(found: dict) -> dict:
        return {n: entry(n, e) for n, e in found.items()}

    def scores_so_far(found: dict) -> dict:
        return {n: {**entry(n, e), **({"scores": found[n]} if n in found else {})} for n, e in explanations.items()}

    def report(stage: str, bar: Progress | None, so_far) -> Progress | None:
        if partial is None:
            return bar
        return Reporter(bar, lambda found: partial({**head, "stage": stage, "methods": so_far(found)}))
    with saving_memory():  # IG's backward is a comparison's peak (core.methods.integrated_gradients)
        explanations, t_explain = explain_all(loaded, pixel_values, query, methods,
                                              report("maps", _span(progress, 0, 100), maps_so_far), explain)
    maps = {n: e.heatmap for n, e in explanations.items()}
    scores, t_scores = score_all(loaded, pixel_values, query, maps, gt_box, image_size, steps,
                                 report("scores", _span(progress, 100, 1000), scores_so_far))
    result = {**head, "methods": {n: {**entry(n, e), "scores": scores[n]} for n, e in explanations.items()},
              "ranking": rank({n: {c: s[c] for c, _ in CRITERIA if c in s} for n, s in scores.items()}),
              "seconds": {"explain": t_explain, "faithfulness": t_scores, "total": time.perf_counter() - start}}
    if partial:
        partial({**result, "stage": "ranking"})
    return result


def _span(progress: Progress | None, lo: int, hi: int) -> Progress | None:
    """Maps a stage's (done, total) onto [lo, hi] of 1000."""
    if progress is None:
        return None
    return lambda done, total: progress(lo + round((hi - lo) * done / max(total, 1)), 1000)


def _sub_progress(progress: Progress | None, k: int, n: int) -> Progress | None:
    """Part k of n equal parts of a stage."""
    if progress is None:
        return None
    return lambda done, total: progress(k * 1000 + round(1000 * done / max(total, 1)), n * 1000)


def summary(result: dict, curves: bool = False) -> dict:
    """The numbers of a comparison, JSON-able (no maps): per method its scores, settings and seconds."""
    from core.methods.registry import METHODS as REGISTRY
    methods = {}
    for name, m in result["methods"].items():
        scores = {k: v for k, v in m["scores"].items() if curves or k != "curves"}
        methods[name] = {"label": REGISTRY[name].label, **scores, "params": m["params"],
                         "info": {k: v for k, v in m["info"].items() if isinstance(v, (str, int, float, bool, list))
                                  or v is None},
                         "seconds": {"explain": result["seconds"]["explain"][name],
                                     "faithfulness": result["seconds"]["faithfulness"][name]}}
    return jsonable({"query": result["query"], "gt_box": result["gt_box"], "steps": result["steps"],
                     "methods": methods, "ranking": result["ranking"], "wall_seconds": result["seconds"]["total"]})


def jsonable(obj):
    """Plain JSON values: numpy scalars and arrays to Python, nan and inf to None (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

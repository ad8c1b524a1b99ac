"""What the dashboard, the background jobs and the CLI call: one process-wide model and cached work.

Images are kept server-side by content hash; detections and explanations are cached by model +
image + parameters, so the browser holds only ids and a second person with the same image is
served from the cache.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import torch
from PIL import Image

from core import cache, params as P
from core.models.detection import detect as run_detect
from core.models.loading import DEFAULT_MODEL, LoadedModel, load_model_or_demo

_model: LoadedModel | None = None
_wanted: tuple[str, str | None] = (DEFAULT_MODEL, None)  # (model, device): app.settings.Settings.apply
_lock = threading.Lock()
_inference_ran = False  # read by forked job processes (see job_process_setup)


def configure(model_name: str, device: str | None = None) -> None:
    """The model this process loads on first use (a model already loaded under another name is dropped)."""
    global _wanted, _model
    with _lock:
        if _model is not None and (model_name, device) != _wanted:
            _model = None
        _wanted = (model_name, device)


def _new_lock() -> None:
    """In a forked job process: a lock another thread of the parent held at the fork would never be
    released there."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)


def model() -> LoadedModel:
    """This process' model, loaded once (after fork under gunicorn) as configured."""
    global _model
    if _model is not None:  # no lock once loaded: many request threads ask at once
        return _model
    with _lock:
        if _model is None:
            _model = load_model_or_demo(*_wanted)
        return _model


def use_model(loaded: LoadedModel) -> None:
    """Serve an already-loaded model (CLI and tests)."""
    global _model
    _model = loaded


def job_process_setup() -> None:
    """First thing in a forked job process. A child forked from a parent whose OpenMP pool has run
    hangs in its first parallel op (measured); with one intra-op thread it does not. The web
    process never runs the model itself, so normally jobs keep every core."""
    if _inference_ran:
        torch.set_num_threads(1)


def _count_model_call() -> None:
    global _inference_ran
    _inference_ran = True
    s = cache.store()
    s.set("stats:model_calls", int(s.get("stats:model_calls", 0)) + 1)


def model_calls() -> int:
    """Model runs recorded by every process sharing the cache (tests: cached requests run none)."""
    return int(cache.store().get("stats:model_calls", 0))


class ImageGone(KeyError):
    """The image is no longer on the server (evicted, or the cache was cleared)."""

    def __str__(self):
        return str(self.args[0]) if self.args else "the image is no longer on the server"


def put_image(image: Image.Image) -> str:
    from core.images import image_id
    key = image_id(image)
    cache.store().set("image:" + key, (image.size, np.asarray(image)))
    return key


def get_image(image_key: str) -> Image.Image:
    stored = cache.store().get("image:" + image_key)
    if stored is None:
        raise ImageGone("The image is no longer on the server (the cache was cleared). Please upload it again.")
    return Image.fromarray(stored[1])


def detections(image_key: str) -> list[dict]:
    loaded = model()

    def compute():
        _count_model_call()
        return run_detect(loaded, get_image(image_key))
    return cache.memo(cache.key("detect", loaded.name, image_key), compute)


def _explanation_key(image_key: str, query: int, method: str, params: dict) -> tuple[str, dict]:
    """The cache key and the full parameters: checked against the method's declaration (a forged or
    out-of-range value raises core.params.ParamError before any work), defaults filled in."""
    from core.methods.registry import METHODS, context, require
    loaded = model()
    if method not in METHODS:
        raise P.ParamError(f"Unknown method {method!r}.")
    require(loaded, method)  # a method that does not apply to this model's family: its reason
    spec = METHODS[method]
    full = spec.validate(params, context(loaded))
    P.QUERY.check(query, context(loaded))
    return cache.key("explain", loaded.name, image_key, int(query), spec.family, full), full


def explanation(image_key: str, query: int, method: str, params: dict, progress=None):
    """One method's Explanation for one detection; a family's sibling methods are cached with it.

    The key holds the family's full parameters (defaults filled in): asking with or without a
    default gives the same entry."""
    from core.methods.registry import METHODS
    loaded, spec = model(), METHODS[method]
    key, full = _explanation_key(image_key, query, method, params)

    def compute():
        _count_model_call()
        pixels = loaded.pixel_values(get_image(image_key))
        return spec.compute(loaded, pixels, query, full, progress)
    return cache.memo(key, compute)[method]


def _map_uncertainty_key(image_key, query, method, params, mc: dict) -> tuple[str, dict, dict]:
    key, full = _explanation_key(image_key, query, method, params)
    mc = {**P.validate(P.UNCERTAINTY, {k: mc.get(k) for k in ("samples", "dropout", "seed")}),
          "identity": mc.get("identity") if mc.get("identity") in ("slot", "matched") else "slot"}
    return cache.key("map-uncertainty", key, method, mc), full, mc


def map_uncertainty(image_key: str, query: int, method: str, params: dict, mc: dict, progress=None) -> dict:
    """core.methods.mc_maps.map_uncertainty of one detection's map: mean, std and stability over the
    MC-Dropout samples of the Uncertainty card (mc: samples, dropout, seed, identity), cached."""
    from core.methods.mc_maps import map_uncertainty as compute_maps, supported
    if method not in supported():
        raise P.ParamError(f"Map uncertainty is available for {', '.join(supported())}.")
    loaded = model()
    key, full, mc = _map_uncertainty_key(image_key, query, method, params, mc)

    def compute():
        _count_model_call()
        out = compute_maps(loaded, loaded.pixel_values(get_image(image_key)), query, method, full, mc["samples"],
                           mc["dropout"], mc["seed"], mc["identity"], progress)
        return {k: v for k, v in out.items() if k != "maps"}  # the mean and std are what the page draws
    return cache.memo(key, compute)


def cached_map_uncertainty(image_key: str, query: int, method: str, params: dict, mc: dict) -> dict | None:
    return cache.store().get(_map_uncertainty_key(image_key, query, method, params, mc)[0])


def cached_explanation(image_key: str, query: int, method: str, params: dict):
    """The Explanation if some process has computed it, else None (never runs the model)."""
    found = cache.store().get(_explanation_key(image_key, query, method, params)[0])
    return None if found is None else found.get(method)


def _comparison_key(kind: str, image_key: str, query: int, methods: dict, *extra) -> str:
    full = {name: _explanation_key(image_key, query, name, params)[1] for name, params in methods.items()}
    return cache.key(kind, model().name, image_key, query, full, *extra)


def comparison(image_key: str, query: int, methods: dict, gt_box=None, progress=None) -> dict:
    """Every method's map (through `explanation`'s cache) with faithfulness scores and their ranking
    (core.evaluation.compare.compare); methods: name -> params; gt_box: a true box in image pixels or None."""
    from core.evaluation.compare import compare, shared_pass
    loaded = model()

    def compute():
        _count_model_call()
        image = get_image(image_key)
        pixels = loaded.pixel_values(image)
        keys = {name: _explanation_key(image_key, query, name, params) for name, params in methods.items()}
        missing = {name: full for name, (k, full) in keys.items() if cache.store().get(k) is None}
        for name, result in shared_pass(loaded, pixels, query, missing).items():  # CAM + attention + relevance:
            cache.store().set(keys[name][0], result)                              # one forward and one backward
        return compare(loaded, pixels, query, methods, gt_box, image.size, progress=progress,
                       explain=lambda name, params, p: explanation(image_key, query, name, params, p))
    return cache.memo(_comparison_key("compare", image_key, query, methods, gt_box), compute)


def cached_comparison(image_key: str, query: int, methods: dict, gt_box=None) -> dict | None:
    return cache.store().get(_comparison_key("compare", image_key, query, methods, gt_box))


def sanity(image_key: str, query: int, methods: dict, progress=None) -> dict:
    """core.evaluation.sanity.sanity_check of these methods for one detection (on a copy of the model)."""
    from core.evaluation.sanity import sanity_check
    loaded = model()

    def compute():
        _count_model_call()
        return sanity_check(loaded, loaded.pixel_values(get_image(image_key)), query, methods, progress)
    return cache.memo(_comparison_key("sanity", image_key, query, methods), compute)


def cached_sanity(image_key: str, query: int, methods: dict) -> dict | None:
    return cache.store().get(_comparison_key("sanity", image_key, query, methods))


def _evaluation_key(source: dict, values: dict, methods: list[str]) -> str:
    return cache.key("evaluate", model().name, source, values, sorted(methods))


def evaluation_request(source: dict, values: dict, methods) -> tuple[dict, dict, list[str]]:
    """(source, values, methods) checked against their declarations (ParamError), defaults filled in.
    source: {"kind": "demo", "scenes", "scene_seed"} or {"kind": "folder", "path"} (a folder the
    operator configured: the page sends an index into that list, never a path)."""
    from core.evaluation import coco
    from core.evaluation.evaluate import PARAMS, check_methods
    if source.get("kind") == "demo":
        demo = P.validate((coco.DEMO_SCENES, coco.DEMO_SEED), {k: source.get(k) for k in ("scenes", "scene_seed")})
        source = {"kind": "demo", **demo}
    elif source.get("kind") != "folder":
        raise P.ParamError("Choose the demo scenes or one of the configured datasets.")
    return source, P.validate(PARAMS, values), check_methods(methods)


def evaluation(source: dict, values: dict, methods: list[str], progress=None) -> dict:
    """core.evaluation.evaluate.evaluate of a checked request (evaluation_request), cached per
    (model, source, settings, methods)."""
    from core.evaluation import coco
    from core.evaluation.evaluate import evaluate
    loaded = model()
    source, values, methods = evaluation_request(source, values, methods)

    def compute():
        _count_model_call()
        if source["kind"] == "demo":
            dataset = coco.demo_dataset(source["scenes"], source["scene_seed"], loaded.id2label)
        else:
            dataset = coco.load_folder(source["path"], loaded.id2label)
        return evaluate(loaded, dataset, methods=methods, progress=progress, **values)
    return cache.memo(_evaluation_key(source, values, methods), compute)


def cached_evaluation(source: dict, values: dict, methods: list[str]) -> dict | None:
    return cache.store().get(_evaluation_key(source, values, methods))


def evaluation_image(source: dict, image_id: int):
    """(image, true objects [{"label", "box"}]) of one image of an evaluated dataset, to open it."""
    from core.evaluation import coco
    id2label = model().id2label
    if source["kind"] == "demo":
        dataset = coco.demo_dataset(1, source["scene_seed"] + int(image_id) - 1, id2label)
        entry, objects = dataset.images[0], dataset.truth(1)
    else:
        dataset = coco.load_folder(source["path"], id2label)
        entry = next(i for i in dataset.images if i["id"] == int(image_id))
        objects = dataset.truth(entry["id"])
    return dataset.load(entry), [{"label": o["label"], "box": o["box"]} for o in objects]


def uncertainty_key(model_name: str, image_key: str, samples: int, p: float, seed: int) -> str:
    return cache.key("uncertainty", model_name, image_key, int(samples), float(p), int(seed))


def backbone(image_key: str):
    """core.models.mc_dropout.backbone_features of an image, cached per (model, image) on the CPU: runs with
    other samples, rates or seeds skip the backbone (~85% of a forward)."""
    from core.models.mc_dropout import BackboneFeatures, backbone_features
    loaded = model()

    def compute():
        f = backbone_features(loaded, loaded.pixel_values(get_image(image_key)))
        return BackboneFeatures(f.embeds.cpu(), f.mask.cpu(), f.pos.cpu(), f.grid)
    f = cache.memo(cache.key("backbone", loaded.name, image_key), compute)
    device = loaded.device
    return BackboneFeatures(f.embeds.to(device), f.mask.to(device), f.pos.to(device), f.grid)


def uncertainty(image_key: str, samples: int = 30, p: float | None = None, seed: int = 0, progress=None) -> dict:
    """core.models.mc_dropout.mc_dropout of every query slot of an image, plus "model" (its name), cached per
    (model, image, samples, rate, seed); p None = the trained rate. Its above_threshold_fraction is
    for 0.7: callers recompute it for their threshold from the cached `scores` (a threshold never
    re-runs sampling)."""
    from core.models.mc_dropout import default_chunk, mc_dropout, trained_dropout
    loaded = model()
    checked = P.validate(P.UNCERTAINTY, {"samples": samples, "dropout": p, "seed": seed})  # before the backbone runs
    samples, seed = checked["samples"], checked["seed"]
    p = trained_dropout(loaded) if checked["dropout"] is None else checked["dropout"]

    def compute():
        _count_model_call()
        image = get_image(image_key)
        return {**mc_dropout(loaded, None, image.size, samples=int(samples), p=p, seed=int(seed),
                             chunk=default_chunk(loaded.device), progress=progress, features=backbone(image_key)),
                "model": loaded.name}
    return cache.memo(uncertainty_key(loaded.name, image_key, samples, p, seed), compute)


def cached_uncertainty(model_name: str, image_key: str, samples: int, p: float, seed: int) -> dict | None:
    """The uncertainty result if some process has computed it, else None (never touches the model)."""
    return cache.store().get(uncertainty_key(model_name, image_key, samples, p, seed))

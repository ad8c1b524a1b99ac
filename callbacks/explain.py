"""Explanation jobs (background: progress and cancel) and their figures (drawn from the cache).

The card is generated from the method registry: one entry per family, its variants, one control
per declared parameter. A new method (one core/methods/ module + one registry line) appears here
with its controls, validation and job without any edit in callbacks/ or components/.
"""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, ctx, html, no_update

from callbacks import HIDDEN, SHOWN, preview as early, run_job
from components import ids
from components.heatmaps import add_heatmap
from core import params as P, service
from core.methods.explanation import Reporter
from core.models.detection import option_label

FAMILY_LABELS = {"cam": "Grad-CAM family"}  # families of several methods; others take their method's label
REQUEST = ("image_id", "query", "method", "family", "params", "run")  # what an explanation job was asked


def families(loaded=None) -> list[dict]:
    """The registry as the card shows it: per family (registry order) its label, variants
    (name, label, tooltip), default variant, declared parameters (the shared target aside) and
    whether picking a detection runs it at once (cheap methods). With `loaded`, only the methods
    that apply to that model (core.methods.registry.applicable)."""
    from core.methods import gradcam
    from core.methods.registry import METHODS
    tips = getattr(gradcam, "VARIANTS", {})
    out: dict[str, dict] = {}
    for m in METHODS.values():
        if loaded is not None and m.reason(loaded) is not None:
            continue
        f = out.setdefault(m.family, {
            "family": m.family, "label": FAMILY_LABELS.get(m.family, m.label), "methods": [], "default": m.name,
            "params": [p for p in m.params if p.name != P.TARGET.name], "quick": m.quick, "help": m.help,
            "target": any(p.name == P.TARGET.name for p in m.params)})
        f["methods"].append((m.name, m.label, tips.get(m.name, ("", ""))[1] if m.name in tips else ""))
    if "cam" in out and any(name == gradcam.DEFAULT_VARIANT for name, _, _ in out["cam"]["methods"]):
        out["cam"]["default"] = gradcam.DEFAULT_VARIANT
    return list(out.values())


def control_options(info: dict) -> dict[str, list[tuple]]:
    """Choices that depend on the loaded model, or that carry labels: control id -> (value, label)."""
    from core.methods.baselines import BASELINES
    return {ids.CAM_LAYER: [tuple(layer) for layer in info["layers"]],
            ids.param_id("ig", "baseline"): [(name, label) for name, (label, _) in BASELINES.items()]}


def params_for(family: dict, values: dict, target) -> dict:
    """The request's parameters for one family: its declared names only (validated by the service)."""
    params = {p.name: values.get(ids.param_id(family["family"], p.name)) for p in family["params"]}
    if target is not None:
        params[P.TARGET.name] = target
    return {k: v for k, v in params.items() if v is not None}


def run_explanation(set_progress, clicks, query, family_name, variants, values, target, image, fams, mc=None):
    """Runs in a job process; hands back only a reference: the maps stay in the server-side cache.
    Out-of-range or forged values are refused by the service's validation before any model run."""
    family = next((f for f in fams if f["family"] == family_name), None)
    if query is None or not image or family is None or (ctx.triggered_id == ids.PICKER and not family["quick"]):
        return no_update
    names = [name for name, _, _ in family["methods"]]
    name = variants.get(family_name) if variants.get(family_name) in names else family["default"]
    params = params_for(family, values, target if family["target"] else None)
    ref = {"image_id": image["image_id"], "query": query, "method": name, "family": family_name, "params": params,
           "run": clicks}

    job = early.Job(set_progress, ref, "explain")  # early maps (Integrated Gradients at 9, 17, ... steps)
    progress = job.progress(lambda done, total: f"{done}/{total}")

    def partial(results):
        info = results[name].info
        job.publish(results, info.get("steps"), info=_jsonable(info))

    def work():
        if mc:  # the map under MC-Dropout: mean, std, stability
            result = service.map_uncertainty(image["image_id"], query, name, params, mc, progress)
            return {"mc": mc, "info": {"stability": result["stability"], "samples": result["samples"],
                                       "dropout": result["dropout"]}}
        explanation = service.explanation(image["image_id"], query, name, params, progress=Reporter(progress, partial))
        return {"info": _jsonable(explanation.info)}
    return run_job("The explanation", ref, work, job.tick)


def _jsonable(info: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v))
            for k, v in info.items()}


def describe(method: str, info: dict) -> list:
    """What a person needs to read the map, in words (from the facts the method put in its info)."""
    lines = []
    if "layer_label" in info or ("layer" in info and "target" in info and "baseline" not in info):
        lines.append(f"Layer: {info.get('layer_label', info.get('layer'))}. Target: {info.get('target')} "
                     f"= {info.get('target_value', float('nan')):.4g}.")
    if info.get("partial"):
        lines.append(f"Early map: {info['steps']} of {info.get('steps_final')} steps, refining ...")
    if "baseline" in info:
        rel = info.get("relative_delta")
        steps = info.get("steps") or info.get("samples")
        lines.append(f"Baseline: {info.get('baseline')}; {steps} {'steps' if info.get('steps') else 'samples'}; "
                     f"IG input {info.get('shape', ['?', '?'])[1]}x{info.get('shape', ['?', '?'])[0]} px.")
        if rel is None:
            lines.append("The score is the same at the image and the baseline: nothing to attribute.")
        else:
            verdict = "within" if rel <= 0.05 else "off by"
            lines.append(f"Convergence: attributions add up to the score change {verdict} {100 * rel:.1f}% "
                         f"(delta {info.get('delta'):.3g}; F(image) {info.get('f_input'):.4g}, "
                         f"F(baseline) {info.get('f_baseline'):.4g}).")
        if "steps_tried" in info:
            lines.append("Auto steps tried: " + ", ".join(
                f"{t['steps']} -> {100 * (t['relative_delta'] or 0):.1f}%" for t in info["steps_tried"]) + ".")
    if "grid" in info:
        lines.append(f"Feature grid: {info['grid']}.")
    if info.get("summary"):
        lines.append(info["summary"])
    return [html.Div(line) for line in lines if line]


def map_figure(image, det, query, values, opacity, absolute, title):
    """The image, the picked box on top of a heatmap of `values`."""
    from callbacks.detection import detection_figure
    values = np.asarray(values, dtype=np.float64)
    signed = bool(values.min() < 0) and not absolute
    if absolute:
        values = np.abs(values)
    fig = detection_figure(image, [det] if det else [], 0.0, query, False)
    n_boxes = len(fig.data) - 1
    add_heatmap(fig, values, image["width"], image["height"], opacity=opacity if opacity is not None else 0.5,
                signed=signed, title=title)
    fig.data = (fig.data[0], *fig.data[1 + n_boxes:], *fig.data[1:1 + n_boxes])  # the box stays on top
    return fig


def draw_explanation(result, variant, opacity, absolute, image, detections):
    """Web process, no model: the map comes from the cache (switching a variant is a lookup).
    Returns (figure, its style, info, std figure, its column's style)."""
    from core.methods.registry import METHODS
    none = (no_update, HIDDEN)
    if not result:
        return no_update, HIDDEN, "Pick a detection, then press Explain.", *none
    if result.get("error"):
        return no_update, HIDDEN, html.Div(f"{result['error']}", className="text-danger"), *none
    if not image or result["image_id"] != image["image_id"]:
        return no_update, HIDDEN, "Pick a detection, then press Explain.", *none
    method = result["method"]
    if variant in METHODS and METHODS[variant].family == result["family"]:
        method = variant
    dets = (detections or {}).get("detections", [])
    det = next((d for d in dets if d["index"] == result["query"]), None)
    title = f"{METHODS[method].label} for {option_label(det) if det else result['query']}"
    if result.get("mc"):
        found = service.cached_map_uncertainty(result["image_id"], result["query"], method, result["params"],
                                               result["mc"])
        if found is None:
            return no_update, HIDDEN, "Press Explain to compute the map under MC-Dropout.", *none
        mean = map_figure(image, det, result["query"], found["mean"], opacity, absolute, "mean")
        std = map_figure(image, det, result["query"], found["std"], opacity, True, "std")
        return mean, SHOWN, [html.B(title), html.Div(
            f"Left: the mean map over {found['samples']} MC-Dropout samples (dropout {found['dropout']:.2f}, seed "
            f"{found['seed']}, identity {found['identity']}); right: its per-pixel standard deviation. Stability "
            f"(mean pairwise Spearman correlation of the sample maps): {found['stability']:.3f}.")], std, SHOWN
    explanation = service.cached_explanation(result["image_id"], result["query"], method, result["params"])
    if explanation is None:
        return no_update, HIDDEN, "Press Explain to compute this explanation.", *none
    fig = map_figure(image, det, result["query"], explanation.heatmap, opacity, absolute, method)
    return fig, SHOWN, [html.B(title), *describe(method, {**result["info"], **explanation.info})], *none


def draw_preview(preview, result, opacity, absolute, image, detections):
    """An early map of a running job, from the cache; nothing once that job's final map is shown.
    Returns (figure, its style, info, the std figure column's style)."""
    found = early.early_result(preview, image, result, REQUEST)
    if found is None:
        return no_update, no_update, no_update, no_update
    from core.methods.registry import METHODS
    method, query = preview["method"], preview["query"]
    det = next((d for d in (detections or {}).get("detections", []) if d["index"] == query), None)
    fig = map_figure(image, det, query, found[method].heatmap, opacity, absolute, method)
    title = f"{METHODS[method].label} for {option_label(det) if det else query}"
    return fig, SHOWN, [html.B(title), *describe(method, preview["info"])], HIDDEN


def register(app, settings) -> None:
    # every family is wired (its controls exist, hidden when it does not apply): a Celery worker
    # registers the same callbacks without loading the model
    fams = families()
    param_ids = [ids.param_id(f["family"], p.name) for f in fams for p in f["params"]]
    variant_ids = [ids.variant_id(f["family"]) for f in fams if len(f["methods"]) > 1]

    def show_groups(family):
        return [SHOWN if f["family"] == family else HIDDEN for f in fams]
    app.callback([Output(ids.group_id(f["family"]), "style") for f in fams], Input(ids.METHOD, "value"))(show_groups)

    def explain(set_progress, clicks, query, family, *rest):
        variants = dict(zip(variant_ids, rest[:len(variant_ids)]))
        values = dict(zip(param_ids, rest[len(variant_ids):len(variant_ids) + len(param_ids)]))
        target, image, on, samples, dropout, seed, identity = rest[-7:]
        mc = {"samples": samples, "dropout": dropout, "seed": seed, "identity": identity} if on else None
        return run_explanation(set_progress, clicks, query, family,
                               {v[:-len("-variant")]: value for v, value in variants.items()}, values, target,
                               image, fams, mc)
    app.callback(Output(ids.EXPLAIN_RESULT, "data"), Input(ids.EXPLAIN, "n_clicks"), Input(ids.PICKER, "value"),
                 State(ids.METHOD, "value"), *[State(i, "value") for i in variant_ids + param_ids],
                 State(ids.TARGET, "value"), State(ids.IMAGE_STORE, "data"), State(ids.MAP_UNCERTAINTY, "value"),
                 *[State(i, "value") for i in (ids.MC_SAMPLES, ids.MC_DROPOUT, ids.MC_SEED, ids.MC_IDENTITY)],
                 **early.job_options_with_preview(ids.EXPLAIN, ids.EXPLAIN_CANCEL, ids.EXPLAIN_PROGRESS,
                                                  ids.EXPLAIN_PREVIEW))(explain)
    early.register(app, (ids.EXPLAIN_PREVIEW, ids.EXPLAIN_PREVIEW_SHOWN, ids.EXPLAIN_PREVIEW_VIEW,
                         ids.EXPLAIN_CANCELLED), ids.EXPLAIN_RESULT, REQUEST, [(ids.EXPLAIN_FIGURE, "figure"), (ids.EXPLAIN_FIGURE, "style"),
                                                 (ids.EXPLAIN_INFO, "children"), (f"{ids.EXPLAIN_STD_FIGURE}-col", "style")],
                   [State(ids.EXPLAIN_RESULT, "data"), State(ids.OPACITY, "value"), State(ids.IG_ABSOLUTE, "value"),
                    State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data")], draw_preview,
                   ids.EXPLAIN_CANCEL, ids.EXPLAIN_INFO)

    def draw(result, *rest):
        variants, (opacity, absolute, image, detections) = rest[:len(variant_ids)], rest[len(variant_ids):]
        family = (result or {}).get("family")
        variant = dict(zip(variant_ids, variants)).get(ids.variant_id(family)) if family else None
        return draw_explanation(result, variant, opacity, absolute, image, detections)
    app.callback(Output(ids.EXPLAIN_FIGURE, "figure"), Output(ids.EXPLAIN_FIGURE, "style"),
                 Output(ids.EXPLAIN_INFO, "children"), Output(ids.EXPLAIN_STD_FIGURE, "figure"),
                 Output(f"{ids.EXPLAIN_STD_FIGURE}-col", "style"), Input(ids.EXPLAIN_RESULT, "data"),
                 *[Input(i, "value") for i in variant_ids], Input(ids.OPACITY, "value"),
                 Input(ids.IG_ABSOLUTE, "value"), State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data"),
                 prevent_initial_call=True)(draw)

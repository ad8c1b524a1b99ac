"""Explanation jobs (background: progress and cancel) and their figures (drawn from the cache)."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, callback, ctx, html, no_update

from callbacks import HIDDEN, SHOWN, job_options
from components import ids
from components.heatmaps import add_heatmap
from core import service
from core.models.detection import option_label

QUICK = ("cam", "attention", "relevance")  # explained as soon as a detection is picked


def registry_method(method: str, variant: str) -> str:
    return variant if method == "cam" else method


def params_for(method, layer, target, baseline, sigma, steps, resolution) -> dict:
    if method == "cam":
        return {"layer": layer, "target": target}
    if method == "ig":
        return {"baseline": baseline, "sigma": float(sigma or 8), "steps": steps, "target": target,
                "resolution": int(resolution) if resolution else None}
    return {"target": target}


@callback(Output(ids.CAM_GROUP, "style"), Output(ids.IG_GROUP, "style"), Input(ids.METHOD, "value"))
def show_method_controls(method):
    return SHOWN if method == "cam" else HIDDEN, SHOWN if method == "ig" else HIDDEN


@callback(Output(ids.EXPLAIN_RESULT, "data"),
          Input(ids.EXPLAIN, "n_clicks"), Input(ids.PICKER, "value"),
          State(ids.METHOD, "value"), State(ids.CAM_VARIANT, "value"), State(ids.CAM_LAYER, "value"),
          State(ids.TARGET, "value"), State(ids.IG_BASELINE, "value"), State(ids.IG_SIGMA, "value"),
          State(ids.IG_STEPS, "value"), State(ids.IG_RESOLUTION, "value"), State(ids.IMAGE_STORE, "data"),
          **job_options(ids.EXPLAIN, ids.EXPLAIN_CANCEL, ids.EXPLAIN_PROGRESS))
def run_explanation(set_progress, _clicks, query, method, variant, layer, target, baseline, sigma, steps,
                    resolution, image):
    """Runs in a job process; hands back only a reference: the maps stay in the server-side cache."""
    if query is None or not image or (ctx.triggered_id == ids.PICKER and method not in QUICK):
        return no_update
    service.job_process_setup()
    name = registry_method(method, variant)
    params = params_for(method, layer, target, baseline, sigma, steps, resolution)
    set_progress((0, 1, "starting"))
    try:
        explanation = service.explanation(image["image_id"], query, name, params,
                                          progress=lambda done, total: set_progress((done, total, f"{done}/{total}")))
    except Exception as err:  # noqa: BLE001 - shown in the card; the rest of the page keeps working
        return {"error": f"{type(err).__name__}: {err}", "query": query, "method": name}
    return {"image_id": image["image_id"], "query": query, "method": name, "family": method, "params": params,
            "info": _jsonable(explanation.info)}


def _jsonable(info: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v))
            for k, v in info.items()}


def describe(method: str, info: dict) -> list:
    """What a person needs to read the map, in words."""
    lines = []
    if method in ("gradcam", "gradcam++"):
        lines.append(f"Layer: {info.get('layer_label', info.get('layer'))}. Target: {info.get('target')} "
                     f"= {info.get('target_value', float('nan')):.4g}.")
    if method == "ig":
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
    if method in ("attention", "relevance"):
        grid = info.get("grid") or info.get("shape")
        lines.append(f"Feature grid: {grid}." if grid else "")
    return [html.Div(line) for line in lines if line]


@callback(Output(ids.EXPLAIN_FIGURE, "figure"), Output(ids.EXPLAIN_FIGURE, "style"),
          Output(ids.EXPLAIN_INFO, "children"),
          Input(ids.EXPLAIN_RESULT, "data"), Input(ids.CAM_VARIANT, "value"), Input(ids.OPACITY, "value"),
          Input(ids.IG_ABSOLUTE, "value"), State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data"),
          prevent_initial_call=True)
def draw_explanation(result, variant, opacity, absolute, image, detections):
    """Web process, no model: the map comes from the cache (switching the CAM variant is a lookup)."""
    from callbacks.detection import detection_figure
    if not result:
        return no_update, HIDDEN, "Pick a detection, then press Explain."
    if result.get("error"):
        return no_update, HIDDEN, html.Div(f"The explanation failed: {result['error']}. Try again.",
                                           className="text-danger")
    if not image or result["image_id"] != image["image_id"]:
        return no_update, HIDDEN, "Pick a detection, then press Explain."
    method = variant if result["family"] == "cam" else result["method"]
    explanation = service.cached_explanation(result["image_id"], result["query"], method, result["params"])
    if explanation is None:
        return no_update, HIDDEN, "Press Explain to compute this explanation."
    dets = (detections or {}).get("detections", [])
    det = next((d for d in dets if d["index"] == result["query"]), None)
    values = np.asarray(explanation.heatmap, dtype=np.float64)
    signed = method == "ig" and not absolute
    if method == "ig" and absolute:
        values = np.abs(values)
    fig = detection_figure(image, [det] if det else [], 0.0, result["query"], False)
    n_boxes = len(fig.data) - 1
    add_heatmap(fig, values, image["width"], image["height"], opacity=opacity if opacity is not None else 0.5,
                signed=signed, title=method)
    # the selected box stays drawn on top of the heatmap
    fig.data = (fig.data[0], *fig.data[1 + n_boxes:], *fig.data[1:1 + n_boxes])
    from core.methods.registry import METHODS
    title = f"{METHODS[method].label} for {option_label(det) if det else result['query']}"
    return fig, SHOWN, [html.B(title), *describe(method, {**result["info"], **explanation.info})]

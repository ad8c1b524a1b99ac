"""The Compare view: comparison and sanity jobs (background: progress, cancel), panels drawn from the
cache, exports. The browser holds only references; the maps and scores stay server-side."""
from __future__ import annotations

import json

import numpy as np
from dash import Input, Output, State, ctx, dcc, html, no_update

from callbacks import HIDDEN, SHOWN, job_options, preview as early, run_job
from components import ids
from components.compare import (export_png, fmt, hover_grid, overlay, panel, panel_figure, pending_panel,
                                   ranking_rows, sanity_figure, score_line)
from core import service
from core.methods.explanation import Reporter
from core.evaluation.compare import (IG_DEFAULTS, METHODS, default_methods, jsonable, match_truth, normalise, rank,
                                     summary)
from core.models.detection import option_label
from core.methods.registry import METHODS as REGISTRY

IG_FIELDS = {ids.param_id("ig", name): name for name in IG_DEFAULTS}
LABELS = {name: REGISTRY[name].label for name in METHODS}
REQUEST = ("image_id", "query", "methods", "gt_box", "run")  # what a comparison job was asked


def remember_ig_choice(*args):
    """Which IG controls the person has set (the others take the comparison's cheap defaults)."""
    return sorted(set(args[-1] or []) | {IG_FIELDS[ctx.triggered_id]})


def ig_params(chosen, baseline, sigma, steps, resolution) -> dict:
    """The explanation card's IG values where the person chose them, IG_DEFAULTS elsewhere."""
    card = {"baseline": baseline, "sigma": sigma, "steps": steps, "resolution": resolution or None}
    return {k: (card[k] if k in (chosen or []) else v) for k, v in IG_DEFAULTS.items()}


def methods_for(layer, chosen, baseline, sigma, steps, resolution) -> dict:
    """The compared methods that apply to the served model, with the card's IG choices."""
    from core.methods.registry import applicable
    usable = applicable(service.model())
    return {name: params for name, params in default_methods(ig_params(chosen, baseline, sigma, steps, resolution),
                                                              layer).items() if usable.get(name) is None}


def _detection(detections, query):
    return next((d for d in (detections or {}).get("detections", []) if d["index"] == query), None)


def _progress(set_progress):
    return lambda done, total: set_progress((done, total, _percent(done, total)))


def _percent(done, total) -> str:
    return f"{100 * done / max(total, 1):.0f}%"


JOB_STATES = [State(ids.PICKER, "value"), State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data"),
                 State(ids.CAM_LAYER, "value"), State(ids.COMPARE_IG_CHOSEN, "data"),
                 *[State(ids.param_id("ig", name), "value") for name in ("baseline", "sigma", "steps", "resolution")]]


def run_comparison(set_progress, clicks, query, image, detections, layer, chosen, baseline, sigma, steps,
                      resolution):
    """Job process: every method (cached per family) and its scores; returns a reference only.
    On generated scenes the detection is also scored against the true box of its label with best IoU."""
    if query is None or not image:
        return no_update
    det = _detection(detections, query)
    truth = match_truth(det["box"], det["label"], image.get("truth")) if det else None
    methods = methods_for(layer, chosen, baseline, sigma, steps, resolution)
    ref = {"image_id": image["image_id"], "query": query, "methods": methods, "run": clicks,
           "gt_box": truth["box"] if truth else None, "truth_iou": truth["iou"] if truth else None,
           "ig_chosen": sorted(chosen or [])}

    job = early.Job(set_progress, ref, "compare")

    def partial(so_far):  # panels, scores, ranking as they come; the maps stay in the explanations' cache
        steps = [m["scores"]["steps"] for m in so_far["methods"].values() if "scores" in m]  # coarse, then full
        job.publish({**so_far, "methods": {n: {k: v for k, v in m.items() if k != "heatmap"}
                                           for n, m in so_far["methods"].items()}},
                    so_far["stage"], len(so_far["methods"]), len(steps), sum(steps), stage=so_far["stage"])

    def work():
        service.comparison(image["image_id"], query, methods, ref["gt_box"], Reporter(job.progress(_percent), partial))
    return run_job("The comparison", ref, work, job.tick)


def _comparison(ref, image):
    """The cached comparison behind a reference, or a message saying why there is none."""
    if not ref or not image or ref.get("image_id") != image["image_id"]:
        return None, "Pick a detection, then press Compare."
    if ref.get("error"):
        return None, html.Div(ref["error"], className="text-danger")
    found = service.cached_comparison(ref["image_id"], ref["query"], ref["methods"], ref["gt_box"])
    return found, None if found else "Press Compare to compute the comparison."


def ig_note(ref: dict, info: dict) -> str:
    """Which IG settings the panel used, and whether they are the person's or the comparison's defaults."""
    p = ref["methods"]["ig"]
    source = "from the explanation card" if ref.get("ig_chosen") else "comparison defaults"
    h, w = info.get("shape", ["?", "?"])
    steps = info.get("steps") or p["steps"]
    rel = info.get("relative_delta")
    sigma = f" (sigma {p['sigma']:g})" if p["baseline"] == "blur" else ""
    conv = "" if rel is None else f"; off by {100 * rel:.1f}%"
    return f"IG ({source}): {p['baseline']}{sigma}, {steps} steps, {w}x{h} px{conv}"


def normalised_maps(result: dict, how: str) -> dict[str, np.ndarray]:
    return {n: normalise(m["heatmap"], how) for n, m in result["methods"].items()}


def draw_comparison(ref, how, picked, image, detections):
    """Web process, no model: switching the normalisation only redraws."""
    result, message = _comparison(ref, image)
    if result is None or picked != ref["query"]:
        return [], [], HIDDEN, message or "Press Compare for the picked detection."
    return comparison_view(result, ref, how, image, detections)


def comparison_view(result, ref, how, image, detections):
    """(panels, table rows, table style, info) of a comparison, or of one so far (a running job's
    early result, core.evaluation.compare: methods without a map get a waiting panel, maps without
    scores a waiting line, and the table waits until every map has scores, early ones included)."""
    det = _detection(detections, ref["query"])
    picture = service.get_image(ref["image_id"])
    maps = normalised_maps(result, how or "minmax")
    grid = hover_grid(maps, image["width"], image["height"]) if maps else None
    names = list(maps)
    cells = []
    for name in ref["methods"]:
        if name not in maps:
            cells.append(pending_panel(LABELS[name], "Computing the map ..."))
            continue
        m = result["methods"][name]
        fig = panel_figure(overlay(picture, maps[name]), image["width"], image["height"], names.index(name),
                              [LABELS[n] for n in names], grid, det["box"] if det else None, ref["gt_box"])
        lines = [score_line(m["scores"], result["steps"]) if "scores" in m else "Scoring ..."]
        lines += [ig_note(ref, m["info"])] if name == "ig" else []
        cells.append(panel(LABELS[name], fig, lines, {"type": ids.COMPARE_PANEL, "method": name}))
    title = option_label(det) if det else f"query {ref['query']}"
    scores = {n: m["scores"] for n, m in result["methods"].items() if "scores" in m}
    if "ranking" not in result and len(scores) < len(ref["methods"]):
        return cells, [], HIDDEN, [html.B(f"Comparing the methods for {title}: "), f"{len(maps)} of "
                                   f"{len(ref['methods'])} maps, {len(scores)} scored so far; the ranking comes "
                                   "once every map is scored."]
    if "ranking" not in result:  # every map scored, some from their coarse curves only: an early ranking
        coarse = min(s["steps"] for s in scores.values())
        info = [html.B(f"Early ranking for {title}: "), f"scores from {coarse} of {result['steps']} deletion / "
                "insertion steps where a panel says \"early\"; the final ranking comes as the full curves complete."]
        return cells, ranking_rows(rank(scores), scores, LABELS), SHOWN, info
    truth = (f" Scored against the true {det['label']} box too (IoU {ref['truth_iou']:.2f})."
             if ref["gt_box"] and det else "")
    h, w = next(iter(scores.values())).get("shape", ["?", "?"])
    curves = f" Deletion / insertion: {result['steps']} steps at {w}x{h} px."
    info = [html.B(f"All methods for {title}."), f" {result['seconds']['total']:.1f} s.{truth}{curves} Hover a panel: "
            "every method's value at that point. Magenta: the detected box; dashed white: the true box."]
    return cells, ranking_rows(result["ranking"], scores, LABELS), SHOWN, info


def draw_comparison_preview(preview, ref, how, picked, image, detections):
    """A running comparison's panels, scores and ranking so far (from the cache); nothing once
    that job's final result is shown, or for another detection than the picked one."""
    found = early.early_result(preview, image, ref, REQUEST)
    if found is None or picked != preview["query"]:
        return (no_update,) * 4
    methods = {}
    for name, m in found["methods"].items():  # the maps themselves are in the explanations' cache
        explanation = service.cached_explanation(preview["image_id"], preview["query"], name, preview["methods"][name])
        if explanation is not None:
            methods[name] = {**m, "heatmap": explanation.heatmap}
    return comparison_view({**found, "methods": methods}, preview, how, image, detections)


def run_sanity(set_progress, _clicks, query, image, _detections, layer, chosen, baseline, sigma, steps, resolution):
    """Job process: cascading randomisation on a copy of the model, every method's map each step."""
    if query is None or not image:
        return no_update
    methods = methods_for(layer, chosen, baseline, sigma, steps, resolution)
    ref = {"image_id": image["image_id"], "query": query, "methods": methods}

    def work():
        service.sanity(image["image_id"], query, methods, _progress(set_progress))
    return run_job("The sanity check", ref, work, set_progress)


def _sanity(ref, image, picked):
    if not ref or not image or ref.get("image_id") != image["image_id"] or ref.get("query") != picked:
        return None
    return None if ref.get("error") else service.cached_sanity(ref["image_id"], ref["query"], ref["methods"])


def draw_sanity(ref, picked, image):
    if ref and ref.get("error"):
        return no_update, HIDDEN, html.Div(ref["error"], className="text-danger")
    result = _sanity(ref, image, picked)
    if result is None:
        return no_update, HIDDEN, ""
    rho = {LABELS[n]: m["rho"] for n, m in result["methods"].items()}
    flagged = [LABELS[n] for n, m in result["methods"].items() if m["flagged"]]
    head = (f"Flagged: {', '.join(flagged)}: the map still correlates above {result['threshold']} with the original "
            f"once everything down to the {result['flag_after']} is random, so it does not show what the model "
            "learned." if flagged else
            f"No method flagged: every map changed (|rho| <= {result['threshold']}) once the {result['flag_after']} "
            "was randomised.")
    return (sanity_figure(result["steps"], rho, result["threshold"]), SHOWN,
            html.Div(head, className="text-danger" if flagged else "text-success"))


def download_png(_clicks, ref, how, image, detections):
    result, _ = _comparison(ref, image)
    if result is None:
        return no_update
    return dcc.send_bytes(comparison_png(result, ref, how or "minmax", image, detections), "comparison.png")


def comparison_png(result: dict, ref: dict, how: str, image: dict, detections) -> bytes:
    """The panels as one PNG (PIL, no browser needed), with plain-ASCII score lines under each."""
    from PIL import ImageDraw
    picture, maps = service.get_image(ref["image_id"]), normalised_maps(result, how)
    det = _detection(detections, ref["query"])
    cells = []
    for name, values in maps.items():
        tile = overlay(picture, values)
        scale = tile.width / image["width"]
        draw = ImageDraw.Draw(tile)
        for box, colour in ((ref["gt_box"], "white"), (det["box"] if det else None, "#ff00ff")):
            if box:
                   draw.rectangle([v * scale for v in box], outline=colour, width=2)
        s = result["methods"][name]["scores"]
        lines = [f"deletion AUC {fmt(s['deletion_auc'])} (lower better)",
                    f"insertion AUC {fmt(s['insertion_auc'])} (higher better)",
                    f"pointing game {fmt(s['pointing_game'])}" + (f", truth {fmt(s['pointing_game_gt'])}"
                                                                    if "pointing_game_gt" in s else "")]
        cells.append((LABELS[name], tile, lines))
    title = f"{option_label(det) if det else 'query ' + str(ref['query'])} - normalisation: {how}"
    return export_png(cells, title)


def download_json(_clicks, ref, sanity_ref, image):
    result, _ = _comparison(ref, image)
    if result is None:
        return no_update
    return dict(content=comparison_json(result, ref, image, _sanity(sanity_ref, image, ref["query"])),
                   filename="comparison.json")


def comparison_json(result: dict, ref: dict, image: dict, sanity: dict | None) -> str:
    out = {"image": image.get("name"), "image_id": ref["image_id"], **summary(result, curves=True),
           "truth_iou": ref.get("truth_iou")}
    if sanity:
        out["sanity"] = {"steps": sanity["steps"], "threshold": sanity["threshold"], "flag_after": sanity["flag_after"],
                            "methods": {n: {"rho": m["rho"], "flagged": m["flagged"]}
                                        for n, m in sanity["methods"].items()}}
    return json.dumps(jsonable(out), indent=1, default=str)


def register(app, settings) -> None:
    app.callback(Output(ids.COMPARE_IG_CHOSEN, "data"), *[Input(i, "value") for i in IG_FIELDS],
                 State(ids.COMPARE_IG_CHOSEN, "data"), prevent_initial_call=True)(remember_ig_choice)
    app.callback(Output(ids.COMPARE_RESULT, "data"), Input(ids.COMPARE, "n_clicks"), *JOB_STATES,
                 **early.job_options_with_preview(ids.COMPARE, ids.COMPARE_CANCEL, ids.COMPARE_PROGRESS,
                                                  ids.COMPARE_PREVIEW))(run_comparison)
    view = [(ids.COMPARE_GRID, "children"), (ids.COMPARE_TABLE, "rowData"), (ids.COMPARE_TABLE_GROUP, "style"),
            (ids.COMPARE_INFO, "children")]
    app.callback(*[Output(i, prop) for i, prop in view],
                 Input(ids.COMPARE_RESULT, "data"), Input(ids.COMPARE_NORM, "value"), Input(ids.PICKER, "value"),
                 State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data"), prevent_initial_call=True)(draw_comparison)
    early.register(app, (ids.COMPARE_PREVIEW, ids.COMPARE_PREVIEW_SHOWN, ids.COMPARE_PREVIEW_VIEW,
                         ids.COMPARE_CANCELLED), ids.COMPARE_RESULT, REQUEST, view,
                   [State(ids.COMPARE_RESULT, "data"), State(ids.COMPARE_NORM, "value"), State(ids.PICKER, "value"),
                    State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data")], draw_comparison_preview,
                   ids.COMPARE_CANCEL, ids.COMPARE_INFO)
    app.callback(Output(ids.SANITY_RESULT, "data"), Input(ids.SANITY, "n_clicks"), *JOB_STATES,
                 **job_options(ids.SANITY, ids.SANITY_CANCEL, ids.SANITY_PROGRESS))(run_sanity)
    app.callback(Output(ids.SANITY_FIGURE, "figure"), Output(ids.SANITY_FIGURE, "style"), Output(ids.SANITY_INFO, "children"),
                 Input(ids.SANITY_RESULT, "data"), Input(ids.PICKER, "value"), State(ids.IMAGE_STORE, "data"),
                 prevent_initial_call=True)(draw_sanity)
    app.callback(Output(ids.COMPARE_DOWNLOAD_PNG, "data"), Input(ids.COMPARE_EXPORT_PNG, "n_clicks"),
                 State(ids.COMPARE_RESULT, "data"), State(ids.COMPARE_NORM, "value"), State(ids.IMAGE_STORE, "data"),
                 State(ids.DETECTIONS_STORE, "data"), prevent_initial_call=True)(download_png)
    app.callback(Output(ids.COMPARE_DOWNLOAD_JSON, "data"), Input(ids.COMPARE_EXPORT_JSON, "n_clicks"),
                 State(ids.COMPARE_RESULT, "data"), State(ids.SANITY_RESULT, "data"), State(ids.IMAGE_STORE, "data"),
                 prevent_initial_call=True)(download_json)

"""Upload / samples -> server-side image -> detection job -> threshold and picker filtering."""
from __future__ import annotations

import base64
import os

import numpy as np
from dash import ALL, Input, Output, State, ctx, html, no_update
import dash_bootstrap_components as dbc

from callbacks import POLL_MS
from components import ids
from components.figures import add_boxes, add_truth, image_figure
from core import cache, params as P, service
from core.errors import failure
from core.models.detection import above, option_label
from core.images import MAX_BYTES, MAX_PIXELS, ImageError, data_url, decode_image, fit_for_model
from core.demo.scenes import make_scene

PHOTOS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "samples")
SCENE_SEEDS = (1_000_003, 1_000_011, 1_000_017, 1_000_042)  # held-out seeds: never seen in training


def sample_list(is_demo: bool) -> list[dict]:
    """Gallery entries: generated scenes in demo mode, real photographs otherwise."""
    if is_demo:
        return [{"name": f"scene:{s}", "title": f"Scene {s}", "thumb": data_url(make_scene(s)[0], 64)[0]}
                for s in SCENE_SEEDS]
    return [{"name": f"photo:{f}", "title": f.split(".")[0], "thumb": f"/assets/samples/{f}"} for f in _photos()]


def _photos() -> list[str]:
    return sorted(f for f in os.listdir(PHOTOS_DIR) if f.endswith(".jpg"))


def _error(message: str):
    return dbc.Alert(message, color="danger", dismissable=True, className="mt-2 mb-0 py-2")


def store_image(image, name: str, truth=None) -> dict:
    return {"image_id": service.put_image(image), "width": image.width, "height": image.height,
            "name": name, "truth": truth}


def load_image(contents, _samples, _new_scene, filename, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               longest_edge: int | None = None):
    """Decode and validate in the web process (PIL only, no model); a bad file leaves the old image.
    Sample names come from the page and can be forged: only known samples are opened."""
    trigger = ctx.triggered_id
    if trigger == ids.NEW_SCENE:
        seed = int(np.random.default_rng().integers(2_000_000, 3_000_000))  # held-out range
        image, truth = make_scene(seed)
        return store_image(image, f"scene {seed}", truth), ""
    if isinstance(trigger, dict):
        if not ctx.triggered[0]["value"]:
            return no_update, no_update
        kind, _, name = str(trigger.get("name", "")).partition(":")
        if kind == "scene" and name.isdigit() and int(name) in SCENE_SEEDS:
            image, truth = make_scene(int(name))
            return store_image(image, f"scene {name}", truth), ""
        if kind == "photo" and name in _photos():
            with open(os.path.join(PHOTOS_DIR, name), "rb") as f:
                return store_image(decode_image(f.read()), name), ""
        return no_update, _error("There is no such sample.")
    if not contents:
        return no_update, no_update
    try:
        data = base64.b64decode(contents.split(",", 1)[1] if "," in contents else "", validate=False)
        image = decode_image(data, max_bytes, max_pixels)
    except (ImageError, ValueError) as err:
        return no_update, _error(f"{filename or 'The file'}: {err} The previous image is still shown.")
    if longest_edge:  # a huge image is kept at what the model reads (x2), not at full size
        image = fit_for_model(image, longest_edge)
    return store_image(image, filename or "upload"), ""


def run_detection(image):
    """The model runs once per image (cached by model + image content), in a job process."""
    service.job_process_setup()
    try:
        return {"image_id": image["image_id"], "detections": service.detections(image["image_id"])}
    except cache.ResultUnavailable as err:  # a lost job's reason (a mere cache probe discards this answer)
        return {"image_id": image["image_id"], "detections": [], "error": f"Detection failed: {err}."}
    except Exception as err:  # noqa: BLE001 - shown in the card, the page keeps working
        return {"image_id": image["image_id"], "detections": [], "error": failure(err, "Detection")[1]}


def filter_detections(result, threshold, click, selected, picked, pending=None):
    """Threshold and picker only filter the stored detections: never a model call. New detections
    clear the pick; a shared link's query waiting for this image (`pending`) is picked instead."""
    if not result:
        return [], None, [], ""
    try:
        threshold = P.THRESHOLD.check(threshold)
    except P.ParamError as err:
        return [], None, [], html.Span(str(err), className="text-danger")
    visible = above(result["detections"], threshold)
    options = [{"label": option_label(d), "value": d["index"]} for d in visible]
    shown = {d["index"] for d in visible}
    trigger = ctx.triggered_id
    if trigger == ids.FIGURE and click:
        point = click["points"][0]
        picked = point.get("customdata", picked)
    elif trigger == ids.TABLE and selected:
        picked = selected[0].get("index", picked)
    elif trigger == ids.DETECTIONS_STORE:
        picked = None
    if pending and pending.get("image_id") == result.get("image_id") and trigger not in (ids.FIGURE, ids.TABLE):
        picked = pending["query"]  # a shared link's detection, kept until the picker shows it (callbacks/links.py)
    if picked not in shown:
        picked = None
    rows = [{"index": d["index"], "label": d["label"], "score": round(d["score"], 3),
             "box": ", ".join(f"{v:.0f}" for v in d["box"])} for d in visible]
    count = f"{len(visible)} of {len(result['detections'])} detections at confidence >= {threshold:.2f}"
    if result.get("error"):
        count = html.Span(result["error"], className="text-danger")
    return options, picked, rows, count


def _display_source(image_id: str):
    return cache.memo(cache.key("display", image_id), lambda: data_url(service.get_image(image_id)))


def draw_detections(result, threshold, picked, show_truth, image):
    if not image or not result or result.get("image_id") != image["image_id"]:
        return no_update, no_update
    return detection_figure(image, result["detections"], threshold, picked, show_truth), picked_row_style(picked)


def picked_row_style(picked) -> dict:
    """AG Grid's getRowStyle: the picked detection's row highlighted (the index is an int from the store)."""
    if picked is None:
        return {"styleConditions": []}
    return {"styleConditions": [{"condition": f"params.data.index === {int(picked)}",
                                 "style": {"backgroundColor": "#fff3cd", "fontWeight": "bold"}}]}


def detection_figure(image: dict, detections: list[dict], threshold: float, picked, show_truth: bool):
    """Image + visible boxes (+ truth): also the base the explanation panels draw on."""
    src, tw, th = _display_source(image["image_id"])
    fig = image_figure(src, image["width"], image["height"], tw, th)
    if show_truth and image.get("truth"):
        add_truth(fig, image["truth"])
    return add_boxes(fig, above(detections, threshold or 0), picked)


def register(app, settings) -> None:
    def load(contents, samples, new_scene, filename):
        return load_image(contents, samples, new_scene, filename, settings.max_upload_bytes,
                          settings.max_megapixels * 1_000_000, service.model().preprocess.longest_edge)
    app.callback(Output(ids.IMAGE_STORE, "data"), Output(ids.UPLOAD_MESSAGE, "children"),
                 Input(ids.UPLOAD, "contents"), Input({"type": ids.SAMPLE, "name": ALL}, "n_clicks"),
                 Input(ids.NEW_SCENE, "n_clicks"), State(ids.UPLOAD, "filename"), prevent_initial_call=True)(load)
    app.callback(Output(ids.DETECTIONS_STORE, "data"), Input(ids.IMAGE_STORE, "data"), background=True,
                 interval=POLL_MS,
                 running=[(Output(ids.DETECT_STATUS, "children"), [dbc.Spinner(size="sm"), " detecting..."], ""),
                          (Output(ids.DETECT_CANCEL, "style"), {"display": "inline"}, {"display": "none"})],
                 cancel=[Input(ids.DETECT_CANCEL, "n_clicks")], prevent_initial_call=True)(run_detection)
    app.callback(Output(ids.PICKER, "options"), Output(ids.PICKER, "value"), Output(ids.TABLE, "rowData"),
                 Output(ids.DETECTION_COUNT, "children"),
                 Input(ids.DETECTIONS_STORE, "data"), Input(ids.THRESHOLD, "value"), Input(ids.FIGURE, "clickData"),
                 Input(ids.TABLE, "selectedRows"), State(ids.PICKER, "value"),
                 State(ids.PENDING_PICK, "data"))(filter_detections)
    app.callback(Output(ids.FIGURE, "figure"), Output(ids.TABLE, "getRowStyle"),
                 Input(ids.DETECTIONS_STORE, "data"), Input(ids.THRESHOLD, "value"), Input(ids.PICKER, "value"),
                 Input(ids.SHOW_TRUTH, "value"), State(ids.IMAGE_STORE, "data"),
                 prevent_initial_call=True)(draw_detections)

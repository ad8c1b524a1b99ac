"""MC-Dropout job (background: progress, cancel) and its figures, drawn from the cached samples.

The browser holds only a reference (image, samples, rate, seed); the threshold slider, the picker
and the identity switch redraw from the cache and never run the model.
"""
from __future__ import annotations

from dash import Input, Output, State, html, no_update

from callbacks import HIDDEN, SHOWN, preview as early, run_job
from components import ids
from components.uncertainty import (MAX_INSETS, add_histogram_insets, add_sampled_boxes, dropout_note,
                                    score_histogram, stats_table)
from core import params as P, service
from core.methods.explanation import Reporter
from core.models.detection import above, option_label
from core.models.mc_dropout import above_threshold_fraction

STAT_KEYS = ("score_mean", "score_std", "entropy", "mutual_information", "variation_ratio", "label_counts",
             "box_mean", "box_std")
REQUEST = ("image_id", "samples", "dropout", "seed", "run")  # what an MC-Dropout job was asked


def show_dropout_note(p, trained):
    return dropout_note(p, trained or 0.0)


def reference(image: dict, samples, p, seed) -> dict:
    """What the browser keeps of a run: enough to find it in the cache (with "model", once run).
    The values are checked against their declarations (core.params.UNCERTAINTY): ParamError."""
    values = P.validate(P.UNCERTAINTY, {"samples": samples, "dropout": p, "seed": seed})
    return {"image_id": image["image_id"], **values}


def run_uncertainty(set_progress, clicks, samples, p, seed, image):
    """Job process: T dropout passes of every query slot (cached); returns a reference only."""
    if not image:
        return no_update
    try:
        ref = {**reference(image, samples, p, seed), "run": clicks}
    except P.ParamError as err:  # refused before any job starts
        return {"image_id": image["image_id"], "error": str(err)}

    job = early.Job(set_progress, ref, "uncertainty")  # the statistics of the samples so far, chunk by chunk

    def work():
        progress = Reporter(job.progress(lambda done, total: f"{done}/{total} samples"),
                            lambda so_far: job.publish(so_far, so_far["samples"], drawn=so_far["samples"]))
        result = service.uncertainty(ref["image_id"], ref["samples"], ref["dropout"], ref["seed"], progress)
        return {"model": result["model"], "dropout": result["dropout"]}
    return run_job("MC Dropout", ref, work, job.tick)


def identity_stats(det: dict, identity: str, threshold: float) -> dict:
    """One identity's statistics of a detection, with the above-threshold fraction for `threshold`
    recomputed from the cached sample scores."""
    source = det["matched"] if identity == "matched" else det
    return {**{k: source[k] for k in STAT_KEYS}, "scores": source["scores"], "sampled_boxes": source["sampled_boxes"],
            "above": above_threshold_fraction(source["scores"], threshold)}


def _result(ref, image, detections):
    """The cached run behind a reference and the detections it belongs to, or a message."""
    if not ref or not image or ref.get("image_id") != image["image_id"]:
        return None, "Press Run MC Dropout to sample the detections."
    if ref.get("error"):
        return None, html.Div(ref["error"], className="text-danger")
    if not detections or detections.get("image_id") != image["image_id"]:
        return None, "Waiting for the detections."
    found = service.cached_uncertainty(ref["model"], ref["image_id"], ref["samples"], ref["dropout"], ref["seed"])
    return found, None if found else "Press Run MC Dropout to compute these samples."


def shown_detections(detections: list[dict], threshold: float, picked) -> list[dict]:
    """The detections that get an inset: visible ones, the picked one first, then by score, at most MAX_INSETS."""
    visible = sorted(above(detections, threshold), key=lambda d: (d["index"] != picked, -d["score"]))
    return visible[:MAX_INSETS]


def draw_uncertainty(ref, threshold, picked, identity, image, detections):
    """Web process, no model: histograms beside the visible boxes; the picked one in detail."""
    result, message = _result(ref, image, detections)
    if result is None:
        return no_update, HIDDEN, no_update, HIDDEN, [], message
    return uncertainty_view(result, threshold, picked, identity, image, detections)


def draw_uncertainty_preview(preview, ref, threshold, picked, identity, image, detections):
    """A running job's samples so far (from the cache), drawn as its final result will be; nothing
    once that job's final result is shown."""
    found = early.early_result(preview, image, ref, REQUEST)
    if found is None or not detections or detections.get("image_id") != image["image_id"]:
        return (no_update,) * 6
    return uncertainty_view(found, threshold, picked, identity, image, detections, of=preview["samples"])


def uncertainty_view(result, threshold, picked, identity, image, detections, of=None):
    """(figure, its style, histogram, detail style, table, info) of a run, or of its first samples
    while it runs (`of`: the samples it was asked for)."""
    from callbacks.detection import detection_figure
    threshold, identity = threshold or 0.0, identity or "slot"
    stats = {d["index"]: d for d in result["detections"]}
    dets = detections["detections"]
    shown = [{**d, "scores": identity_stats(stats[d["index"]], identity, threshold)["scores"]}
             for d in shown_detections(dets, threshold, picked)]
    pick = next((d for d in shown if d["index"] == picked), None)
    fig = detection_figure(image, dets, threshold, picked, False)
    if pick is not None:
        both = {k: identity_stats(stats[picked], k, threshold) for k in ("slot", "matched")}
        boxes = len(fig.data) - 1
        add_sampled_boxes(fig, pick, both[identity]["sampled_boxes"], both[identity]["box_mean"])
        fig.data = (fig.data[0], *fig.data[1 + boxes:], *fig.data[1:1 + boxes])  # boxes over the samples
    add_histogram_insets(fig, shown, image["width"], image["height"])
    naming = "Hungarian-matched" if identity == "matched" else "query slot"
    count = f"{result['samples']} samples" if of is None else f"So far {result['samples']} of {of} samples"
    head = (f"{count} at dropout {result['dropout']:.2f} "
            f"(trained {result['trained_dropout']:.2f}), seed {result['seed']}; identity: {naming}. "
            "Beside each box: its score over the samples (hover a bar for the count and score range).")
    if len(above(dets, threshold)) > MAX_INSETS:
        head += f" Histograms for the {MAX_INSETS} highest scores."
    if pick is None:
        return fig, SHOWN, no_update, HIDDEN, [], [head, " Pick a detection for its statistics and sampled boxes."]
    scores = both[identity]["scores"]
    hist = score_histogram(scores, pick["label"], pick["score"], threshold)
    hist.update_layout(title_text=f"{option_label(pick)}: score over {len(scores)} samples")
    table = stats_table(both, pick["score"], threshold, stats[picked]["slot_swap_fraction"])
    return fig, SHOWN, hist, {"display": "flex"}, table, [
        head, " Faint outlines: the picked detection's box in each sample; dashed: their mean."]


def register(app, settings) -> None:
    app.callback(Output(ids.MC_DROPOUT_NOTE, "children"), Input(ids.MC_DROPOUT, "value"), State(ids.MC_TRAINED, "data"))(show_dropout_note)
    app.callback(Output(ids.MC_RESULT, "data"), Input(ids.MC_RUN, "n_clicks"),
                 State(ids.MC_SAMPLES, "value"), State(ids.MC_DROPOUT, "value"), State(ids.MC_SEED, "value"),
                 State(ids.IMAGE_STORE, "data"),
                 **early.job_options_with_preview(ids.MC_RUN, ids.MC_CANCEL, ids.MC_PROGRESS, ids.MC_PREVIEW)
                 )(run_uncertainty)
    view = [(ids.MC_FIGURE, "figure"), (ids.MC_FIGURE, "style"), (ids.MC_HISTOGRAM, "figure"), (ids.MC_DETAIL, "style"),
            (ids.MC_STATS, "children"), (ids.MC_INFO, "children")]
    app.callback(*[Output(i, prop) for i, prop in view],
                 Input(ids.MC_RESULT, "data"), Input(ids.THRESHOLD, "value"), Input(ids.PICKER, "value"),
                 Input(ids.MC_IDENTITY, "value"), State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data"),
                 prevent_initial_call=True)(draw_uncertainty)
    early.register(app, (ids.MC_PREVIEW, ids.MC_PREVIEW_SHOWN, ids.MC_PREVIEW_VIEW, ids.MC_CANCELLED), ids.MC_RESULT,
                   REQUEST, view, [State(ids.MC_RESULT, "data"), State(ids.THRESHOLD, "value"),
                                   State(ids.PICKER, "value"), State(ids.MC_IDENTITY, "value"),
                                   State(ids.IMAGE_STORE, "data"), State(ids.DETECTIONS_STORE, "data")],
                   draw_uncertainty_preview, ids.MC_CANCEL, ids.MC_INFO)

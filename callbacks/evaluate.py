"""The Evaluate tab: an evaluation job (background: progress, cancel) over the demo scenes or a
dataset folder the operator configured (Settings.datasets; the page sends only an index), figures
drawn from the cached result, and a row of the worst table opened in the Explain tab."""
from __future__ import annotations

from pathlib import Path

from dash import Input, Output, State, dcc, html, no_update

from callbacks import HIDDEN, SHOWN, job_options, run_job
from callbacks.detection import store_image
from components import ids
from components.evaluate import summary_line, worst_rows
from core import params as P, service
from core.evaluation import coco
from core.evaluation.evaluate import PARAMS

SHOWN_PARAMS = ("samples", "seed")  # the run's settings the tab offers (the others keep their declared defaults)


def shown_params() -> list:
    """The declared settings the tab shows: the demo scenes' count and first seed, then SHOWN_PARAMS."""
    return [coco.DEMO_SCENES, coco.DEMO_SEED, *(p for p in PARAMS if p.name in SHOWN_PARAMS)]


def source_of(choice: str, values: dict, datasets: list[str]) -> dict:
    """The page's choice ("demo" or "folder:<index>") as a source for core.service.evaluation."""
    if choice == "demo":
        return {"kind": "demo", "scenes": values.get("scenes"), "scene_seed": values.get("scene_seed")}
    kind, _, index = str(choice).partition(":")
    if kind != "folder" or not index.isdigit() or int(index) >= len(datasets):
        raise P.ParamError("Choose the demo scenes or one of the configured datasets.")
    return {"kind": "folder", "path": datasets[int(index)]}


def run_evaluation(set_progress, _clicks, choice, methods, values: dict, datasets: list[str]):
    """Job process: the whole dataset (cached); returns a reference only."""
    try:
        source, checked, methods = service.evaluation_request(
            source_of(choice, values, datasets), {k: values.get(k) for k in SHOWN_PARAMS}, methods or [])
    except P.ParamError as err:  # refused before any job starts
        return {"error": str(err)}
    ref = {"source": source, "values": checked, "methods": methods}

    def work():
        service.evaluation(source, checked, methods, lambda done, total: set_progress(
            (done, total, f"{100 * done / max(total, 1):.0f}%")))
    return run_job("The evaluation", ref, work, set_progress)


def draw_evaluation(ref):
    """Web process, no model: the figures of the cached result."""
    from core.evaluation.report import figures
    if not ref:
        return no_update, no_update, [], HIDDEN
    if ref.get("error"):
        return html.Div(ref["error"], className="text-danger"), [], [], HIDDEN
    result = service.cached_evaluation(ref["source"], ref["values"], ref["methods"])
    if result is None:
        return "Press Evaluate to compute this evaluation.", [], [], HIDDEN
    graphs = [dcc.Graph(figure=fig, id=f"eval-figure-{name}", config={"displaylogo": False})
              for name, fig in figures(result).items()]
    return summary_line(result), graphs, worst_rows(result), SHOWN


def open_row(selected, ref):
    """A row of the worst table: its image in the Explain tab, its detection picked once detected."""
    if not selected or not ref or ref.get("error"):
        return no_update, no_update, no_update
    row = selected[0]
    image, truth = service.evaluation_image(ref["source"], row["image_id"])
    stored = store_image(image, row["file_name"], truth)
    return stored, {"image_id": stored["image_id"], "query": int(row["query"])}, ids.EXPLAIN_TAB


def register(app, settings) -> None:
    datasets = [str(Path(d)) for d in settings.datasets]
    param_ids = [ids.param_id("eval", p.name) for p in shown_params()]

    def run(set_progress, clicks, choice, methods, *values):
        return run_evaluation(set_progress, clicks, choice, methods,
                              {p.name: v for p, v in zip(shown_params(), values)}, datasets)
    app.callback(Output(ids.EVAL_RESULT, "data"), Input(ids.EVAL_RUN, "n_clicks"), State(ids.EVAL_SOURCE, "value"),
                 State(ids.EVAL_METHODS, "value"), *[State(i, "value") for i in param_ids],
                 **job_options(ids.EVAL_RUN, ids.EVAL_CANCEL, ids.EVAL_PROGRESS))(run)
    app.callback(Output(ids.EVAL_INFO, "children"), Output(ids.EVAL_FIGURES, "children"),
                 Output(ids.EVAL_WORST, "rowData"), Output(ids.EVAL_WORST_GROUP, "style"),
                 Input(ids.EVAL_RESULT, "data"), prevent_initial_call=True)(draw_evaluation)
    app.callback(Output(ids.IMAGE_STORE, "data", allow_duplicate=True), Output(ids.PENDING_PICK, "data"),
                 Output(ids.TABS, "active_tab"), Input(ids.EVAL_WORST, "selectedRows"), State(ids.EVAL_RESULT, "data"),
                 prevent_initial_call=True)(open_row)

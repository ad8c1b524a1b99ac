"""The Evaluate tab: a dataset (the demo scenes, or a folder the operator configured), settings from
their declarations, a background job, and the figures of core/evaluation/report.py."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from components.controls import param_control, with_tooltip
from components.tables import table

WORST_COLUMNS = [("kind", "why listed"), ("file_name", "image"), ("query", "query"), ("label", "label"),
                 ("score", "score"), ("detail", "detail")]


def evaluate_panel(datasets: list[str], params: list, methods: list[tuple[str, str]], default_methods: list[str]):
    """datasets: names of the configured dataset folders; params: the declared settings shown
    (core.params.Param); methods: (name, label) of the registered explanation methods."""
    sources = [{"label": "Demo scenes (generated, with exact truth)", "value": "demo"}] + [
        {"label": name, "value": f"folder:{k}"} for k, name in enumerate(datasets)]
    return dbc.Row([
        dbc.Col(dbc.Card(dbc.CardBody([
            with_tooltip("Dataset", dcc.Dropdown(id=ids.EVAL_SOURCE, options=sources, value="demo", clearable=False),
                         ids.EVAL_SOURCE, "The demo scenes, or a COCO-format folder (annotations.json + images) the "
                                          "operator listed in DETR_DATASETS. Paths cannot be typed here."),
            *[param_control(p, ids.param_id("eval", p.name)) for p in params],
            with_tooltip("Explanation methods", dcc.Checklist(
                id=ids.EVAL_METHODS, options=[{"label": f" {label}", "value": name} for name, label in methods],
                value=default_methods, labelClassName="d-block"), ids.EVAL_METHODS,
                "Methods whose maps are scored on each image's most confident correct detection: pointing game, "
                "energy pointing, deletion / insertion AUC, sensitivity (captum sensitivity_max)."),
            html.Div([dbc.Button("Evaluate", id=ids.EVAL_RUN, color="primary", className="me-2"),
                      dbc.Button("Cancel", id=ids.EVAL_CANCEL, color="secondary", outline=True,
                                 style={"display": "none"})]),
            dbc.Tooltip("Run the model over the dataset (background job with progress).", target=ids.EVAL_RUN),
        ])), md=4, lg=3),
        dbc.Col(dbc.Card([
            dbc.CardHeader("Evaluation: detection quality, calibration, explanation quality"),
            dbc.CardBody([
                dbc.Progress(id=ids.EVAL_PROGRESS, value=0, max=1, striped=True, animated=True,
                             style={"display": "none"}, className="mb-2"),
                html.Div(id=ids.EVAL_INFO, children="Choose a dataset and press Evaluate.", className="mb-2"),
                html.Div(id=ids.EVAL_FIGURES),
                html.Div(id=ids.EVAL_WORST_GROUP, style={"display": "none"}, children=[
                    html.H3("Worst-calibrated and worst-explained detections", className="h6 mt-3"),
                    html.P("Select a row to open that image and detection in the Explain tab.",
                           className="small text-muted"),
                    table(ids.EVAL_WORST, WORST_COLUMNS, "Worst-calibrated and worst-explained detections: select "
                                                         "a row to open it"),
                ]),
                dcc.Store(id=ids.EVAL_RESULT),
            ]),
        ]), md=8, lg=9),
    ], className="mt-3")


def summary_line(result: dict) -> str:
    def f(v):
        return "-" if v is None else f"{v:.3f}"
    line = (f"{result['dataset']['name']}: {result['images']} images. AP {f(result['ap'])}, AP50 {f(result['ap50'])}, "
            f"AP75 {f(result['ap75'])}. Calibration at confidence > {result['threshold']:g}: D-ECE "
            f"{f(result['d_ece'])}, OCE {f(result['oce'])}")
    if result.get("mc"):
        line += f"; MC-Dropout means (T={result['mc']['samples']}): D-ECE {f(result['mc']['d_ece'])}, " \
                f"OCE {f(result['mc']['oce'])}"
    unmatched = result["dataset"].get("unmatched_categories")
    return line + "." + (f" Categories the model does not know (left out): {', '.join(unmatched)}." if unmatched
                         else "")


def worst_rows(result: dict) -> list[dict]:
    rows = [{"kind": "calibration", "image_id": r["image_id"], "file_name": r["file_name"], "query": r["query"],
             "label": r["label"], "score": round(r["score"], 3),
             "detail": "true positive" if r["tp"] else f"false positive (best IoU {r['best_iou']:.2f})"}
            for r in result.get("worst_calibrated", [])]
    rows += [{"kind": f"explanation ({r['method']})", "image_id": r["image_id"], "file_name": r["file_name"],
              "query": r["query"], "label": r["label"], "score": round(r["score"], 3),
              "detail": f"energy pointing {r['energy_pointing']:.2f}"}
             for r in result.get("worst_explained", []) if r.get("energy_pointing") is not None]
    return rows

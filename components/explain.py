"""The explanation controls (left card) and result panel (main area)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from components.controls import param_control, with_tooltip
from components.describe import described

def explain_controls(families: list[dict], target, options: dict[str, list[tuple]], offered=None):
    """The explanation card, built from the method registry and the parameter declarations
    (callbacks.explain.families): a method picker (one entry per family), the family's variants
    as radio items, one control per declared parameter (components.controls.param_control), the
    shared target. `options`: control id -> (value, label) pairs for model-dependent choices;
    `offered`: the families the picker offers (those that apply to the model; default all)."""
    offered = [f for f in families if offered is None or f["family"] in offered]
    groups = []
    for f in families:
        parts = []
        if len(f["methods"]) > 1:
            tips = " ".join(f"{label}: {tip}" for _, label, tip in f["methods"] if tip)
            parts.append(with_tooltip(f"{f['label']} variant", dbc.RadioItems(
                id=ids.variant_id(f["family"]), options=[{"label": label, "value": name}
                                                         for name, label, _ in f["methods"]],
                value=f["default"], inline=True), ids.variant_id(f["family"]),
                "Which member of the family draws the map (switching is a lookup: no model run). " + tips))
        for param in f["params"]:
            control_id = ids.param_id(f["family"], param.name)
            parts.append(param_control(param, control_id, options.get(control_id)))
        groups.append(html.Div(parts, id=ids.group_id(f["family"]),
                               style=None if f is offered[0] else {"display": "none"}))
    return html.Div([
        html.Hr(),
        with_tooltip("Explanation method", dcc.Dropdown(
            id=ids.METHOD, options=[{"label": f["label"], "value": f["family"]} for f in offered],
            value=offered[0]["family"], clearable=False), ids.METHOD,
            "Which attribution method explains the picked detection. " + " ".join(
                f"{f['label']}: {f['help']}" for f in offered if f.get("help"))),
        *groups,
        param_control(target, ids.TARGET, [(v, TARGET_LABELS.get(v, v)) for v in target.choices]),
        with_tooltip("Map uncertainty", dbc.Switch(id=ids.MAP_UNCERTAINTY, value=False,
                                                   label="mean and std over MC-Dropout samples"),
                     ids.MAP_UNCERTAINTY, "Compute the map in every MC-Dropout sample (samples, rate, seed and "
                                          "identity of the Uncertainty card) and show its mean beside its per-pixel "
                                          "standard deviation, with a stability figure: the mean pairwise Spearman "
                                          "correlation of the sample maps (1: the map does not change under dropout). "
                                          "For the Grad-CAM family and DETR attention."),
        with_tooltip("Absolute values", dbc.Switch(id=ids.IG_ABSOLUTE, value=False, label="show |attribution|"),
                     ids.IG_ABSOLUTE, "Signed maps (red raises the score, blue lowers it) or their magnitude."),
        with_tooltip("Heatmap opacity", dcc.Slider(id=ids.OPACITY, min=0, max=1, step=0.05, value=0.5,
                                                   marks={0: "0", 0.5: "0.5", 1: "1"}),
                     ids.OPACITY, "How strongly the heatmap covers the image."),
        html.Div([dbc.Button("Explain", id=ids.EXPLAIN, color="primary", className="me-2"),
                  dbc.Button("Cancel", id=ids.EXPLAIN_CANCEL, color="secondary", outline=True,
                             style={"display": "none"})]),
        dbc.Tooltip("Compute the chosen explanation for the picked detection (runs in the background).",
                    target=ids.EXPLAIN),
    ])


TARGET_LABELS = {"class": "class score (logit of its label)", "cx": "box cx", "cy": "box cy", "w": "box w",
                 "h": "box h"}


def explain_panel():
    return dbc.Card([
        dbc.CardHeader("Explanation of the picked detection"),
        dbc.CardBody([
            dbc.Progress(id=ids.EXPLAIN_PROGRESS, value=0, max=1, striped=True, animated=True,
                         style={"display": "none"}, className="mb-2"),
            html.Div(id=ids.EXPLAIN_INFO, className="mb-2", children="Pick a detection, then press Explain."),
            dbc.Row([dbc.Col(described(dcc.Graph(id=ids.EXPLAIN_FIGURE, config={"displaylogo": False},
                                                 style={"display": "none"}),
                                       ids.caption_id(ids.EXPLAIN_FIGURE), "Explanation map")),
                     dbc.Col(described(dcc.Graph(id=ids.EXPLAIN_STD_FIGURE, config={"displaylogo": False}),
                                       ids.caption_id(ids.EXPLAIN_STD_FIGURE), "Map spread over the MC-Dropout samples"),
                             id=f"{ids.EXPLAIN_STD_FIGURE}-col", style={"display": "none"})]),
            dcc.Store(id=ids.EXPLAIN_RESULT), dcc.Store(id=ids.EXPLAIN_PREVIEW), dcc.Store(id=ids.EXPLAIN_PREVIEW_SHOWN),
            dcc.Store(id=ids.EXPLAIN_PREVIEW_VIEW), dcc.Store(id=ids.EXPLAIN_CANCELLED),
        ]),
    ], className="mb-3")

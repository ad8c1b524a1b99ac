"""The explanation controls (left card) and result panel (main area)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from components.controls import with_tooltip

METHOD_OPTIONS = [
    {"label": "Grad-CAM / Grad-CAM++", "value": "cam"},
    {"label": "Integrated Gradients", "value": "ig"},
    {"label": "DETR attention (decoder cross-attention)", "value": "attention"},
    {"label": "Attention relevance (Chefer et al.)", "value": "relevance"},
]
TARGET_OPTIONS = [{"label": "class score (logit of its label)", "value": "class"},
                  *[{"label": f"box {c}", "value": c} for c in ("cx", "cy", "w", "h")]]
STEP_OPTIONS = [{"label": str(s), "value": s} for s in (10, 25, 50, 100, 200, 300)] + [
    {"label": "auto (until within 5%)", "value": "auto"}]


def explain_controls(layers: list[tuple[str, str]], default_layer: str, baselines: dict[str, tuple[str, str]]):
    """layers: (module name, readable label); baselines: name -> (label, one-line explanation)."""
    baseline_help = " ".join(f"{label}: {text}" for label, text in baselines.values())
    return html.Div([
        html.Hr(),
        with_tooltip("Explanation method", dcc.Dropdown(id=ids.METHOD, options=METHOD_OPTIONS, value="cam",
                                                        clearable=False),
                     ids.METHOD, "Which attribution method explains the picked detection."),
        html.Div([
            with_tooltip("Grad-CAM Variant", dbc.RadioItems(
                id=ids.CAM_VARIANT, options=[{"label": "Grad-CAM", "value": "gradcam"},
                                             {"label": "Grad-CAM++", "value": "gradcam++"}],
                value="gradcam", inline=True),
                ids.CAM_VARIANT, "Choose the gradient-based visualization method. Grad-CAM++ may highlight "
                                 "smaller regions more precisely."),
            with_tooltip("Layer", dcc.Dropdown(id=ids.CAM_LAYER, options=[{"label": label, "value": name}
                                                                          for name, label in layers],
                                               value=default_layer, clearable=False),
                         ids.CAM_LAYER, "The backbone conv layer whose activations Grad-CAM weighs. Early: fine "
                                        "but low-level; late: semantic but coarse. Default: last conv of the "
                                        "last stage."),
        ], id=ids.CAM_GROUP),
        html.Div([
            with_tooltip("Baseline", dcc.Dropdown(id=ids.IG_BASELINE, value="blur", clearable=False, options=[
                {"label": label, "value": name, "title": text} for name, (label, text) in baselines.items()]),
                ids.IG_BASELINE, "What 'no signal' looks like for Integrated Gradients. " + baseline_help),
            with_tooltip("Blur sigma (px)", dcc.Slider(id=ids.IG_SIGMA, min=1, max=32, step=1, value=8,
                                                       marks={1: "1", 8: "8", 16: "16", 32: "32"}),
                         ids.IG_SIGMA, "Gaussian blur radius of the blurred baseline, in pixels of IG's input."),
            with_tooltip("Steps", dcc.Dropdown(id=ids.IG_STEPS, options=STEP_OPTIONS, value=50, clearable=False),
                         ids.IG_STEPS, "Points on the path from baseline to image (each is a forward and backward "
                                       "pass). 'auto' raises 50 -> 100 -> 200 -> 300 until the attributions add up "
                                       "to the score change within 5%."),
            with_tooltip("IG input size (short side, px)", dcc.Input(
                id=ids.IG_RESOLUTION, type="number", min=32, max=1333, step=16, value=None,
                placeholder="model input size", className="form-control"),
                ids.IG_RESOLUTION, "Resolution at which IG runs. Empty: the model's own input size. A smaller "
                                   "side is much faster (cost grows with pixels)."),
            with_tooltip("Absolute values", dbc.Switch(id=ids.IG_ABSOLUTE, value=False, label="show |attribution|"),
                         ids.IG_ABSOLUTE, "Signed attributions (red raises the score, blue lowers it) or their "
                                          "magnitude."),
        ], id=ids.IG_GROUP, style={"display": "none"}),
        with_tooltip("Explain", dcc.Dropdown(id=ids.TARGET, options=TARGET_OPTIONS, value="class", clearable=False),
                     ids.TARGET, "What to explain: the detection's class score (pre-softmax logit of its label), "
                                 "or one coordinate of its predicted box (where it is, not what it is)."),
        with_tooltip("Heatmap opacity", dcc.Slider(id=ids.OPACITY, min=0, max=1, step=0.05, value=0.5,
                                                   marks={0: "0", 0.5: "0.5", 1: "1"}),
                     ids.OPACITY, "How strongly the heatmap covers the image."),
        html.Div([dbc.Button("Explain", id=ids.EXPLAIN, color="primary", className="me-2"),
                  dbc.Button("Cancel", id=ids.EXPLAIN_CANCEL, color="secondary", outline=True,
                             style={"display": "none"})]),
        dbc.Tooltip("Compute the chosen explanation for the picked detection (runs in the background).",
                    target=ids.EXPLAIN),
    ])


def explain_panel():
    return dbc.Card([
        dbc.CardHeader("Explanation of the picked detection"),
        dbc.CardBody([
            dbc.Progress(id=ids.EXPLAIN_PROGRESS, value=0, max=1, striped=True, animated=True,
                         style={"display": "none"}, className="mb-2"),
            html.Div(id=ids.EXPLAIN_INFO, className="mb-2", children="Pick a detection, then press Explain."),
            dcc.Graph(id=ids.EXPLAIN_FIGURE, config={"displaylogo": False}, style={"display": "none"}),
            dcc.Store(id=ids.EXPLAIN_RESULT),
        ]),
    ], className="mb-3")

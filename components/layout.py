"""The page: controls card on the left, image and results in the main area, guide below."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from components.controls import with_tooltip
from components.describe import described
from components.guide import guide
from components.tables import table
from core.params import THRESHOLD


def model_banner(info: dict):
    if not info.get("fallback_reason"):
        return html.Div(id=ids.MODEL_BANNER)
    return dbc.Alert([html.B("Using the bundled demo model. "), info["fallback_reason"],
                      " To use the real model: connect to the internet once and restart with "
                      "--model facebook/detr-resnet-50 (it is cached afterwards)."],
                     id=ids.MODEL_BANNER, color="warning", className="mb-3")


def upload_card(info: dict, samples: list[dict], max_bytes: int):
    gallery = [
        html.Button(html.Img(src=s["thumb"], alt=s["title"], style={"width": "64px", "height": "64px",
                                                                      "objectFit": "cover"}),
                    id={"type": ids.SAMPLE, "name": s["name"]}, title=s["title"], n_clicks=0,
                    className="btn btn-outline-secondary p-1 me-1 mb-1")
        for s in samples
    ]
    # demo-only controls exist in every mode (callbacks name them) but show only with the demo model
    extra = [html.Div([dbc.Button("New scene", id=ids.NEW_SCENE, size="sm", color="secondary", className="mb-2"),
                 dbc.Tooltip("Generate a fresh synthetic scene (held-out seed) with known true boxes.",
                             target=ids.NEW_SCENE),
                 dbc.Switch(id=ids.SHOW_TRUTH, label="Show ground-truth boxes", value=False),
                 dbc.Tooltip("Draw the true boxes of a generated scene (dashed) to see where the model is right "
                             "and wrong.", target=ids.SHOW_TRUTH)],
                      style=None if info.get("is_demo") else {"display": "none"})]
    return html.Div([
        # dcc.Upload drops a file over max_size without telling anyone: the limit is written in the box
        with_tooltip("Image", dcc.Upload(
            id=ids.UPLOAD, accept="image/*", multiple=False, max_size=max_bytes,
            children=html.Div(["Drag and drop or ", html.A("choose an image", href="#"),
                               html.Div(f"PNG, JPEG, WebP, BMP, TIFF or GIF, up to {max_bytes / 2**20:g} MB",
                                        className="small text-muted")]),
            className="border border-2 rounded text-center p-3", style={"borderStyle": "dashed"}),
            ids.UPLOAD, "Upload a PNG, JPEG, WebP, BMP, TIFF or GIF image (first frame). "
                        "EXIF rotation is applied; the image stays on the server."),
        html.Div(id=ids.UPLOAD_MESSAGE),
        html.Div("Samples", className="form-label fw-semibold mb-1"),
        html.Div(gallery, id=ids.SAMPLES, className="mb-2"),
        *extra,
    ])


def detection_controls():
    return html.Div([
        with_tooltip(THRESHOLD.label, dcc.Slider(
            id=ids.THRESHOLD, min=THRESHOLD.min, max=THRESHOLD.max, step=0.01, value=THRESHOLD.default,
            marks={v / 10: f"{v / 10:g}" for v in range(0, 11, 2)}, tooltip={"placement": "bottom"}),
            ids.THRESHOLD, THRESHOLD.help),
        with_tooltip("Pick a detection", dcc.Dropdown(id=ids.PICKER, options=[], placeholder="No detection yet",
                                                       clearable=True),
                     ids.PICKER, "Select which detected object to explain. Format shown as 'index: label (score)'."),
    ])


def detection_panel():
    return dbc.Card(dbc.CardBody([
        html.Div([html.Span(id=ids.DETECTION_COUNT, className="me-3"),
                  html.Span(id=ids.DETECT_STATUS),
                  dbc.Button("Cancel", id=ids.DETECT_CANCEL, size="sm", color="link", style={"display": "none"})],
                 className="mb-2"),
        described(dcc.Graph(id=ids.FIGURE, config={"displaylogo": False, "scrollZoom": False},
                            figure={"layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                                               "annotations": [{"text": "Upload an image or pick a sample",
                                                                "showarrow": False, "font": {"size": 16}}],
                                               "height": 360}}),
                  ids.caption_id(ids.FIGURE), "Image with its detections"),
        table(ids.TABLE, [("index", "query"), ("label", "label"), ("score", "score"), ("box", "box (px)")],
              "Detections: select a row (click, or arrow keys and Space) to pick that detection"),
    ]), className="mb-3")


def page(info: dict, samples: list[dict], controls: list = (), panels: list = (), extra_choices=(), evaluate=None,
         top: list = (), stores: list = ()):
    """The whole page. `controls` / `panels`: the cards each feature adds (left column / main area);
    `evaluate`: the Evaluate tab's content; `top`: a bar above the tabs (the shareable link);
    `stores`: invisible components (dcc.Location)."""
    # landmarks (a banner with the one h1, one main holding everything else): screen-reader users
    # jump between them, and axe-core's landmark-one-main / page-has-heading-one / region rules ask for them
    return dbc.Container([
        dcc.Store(id=ids.IMAGE_STORE), dcc.Store(id=ids.DETECTIONS_STORE), dcc.Store(id=ids.PENDING_PICK), *stores,
        html.Header([
            html.H1("DETR Interpretability Dashboard", className="h3 mt-3"),
            html.P(f"What an object-detection transformer sees, and how sure it is. Model: {info['name']}",
                   className="text-muted"),
        ]),
        html.Main([
            model_banner(info),
            *top,
            dbc.Tabs([
                dbc.Tab(dbc.Row([
                    dbc.Col(dbc.Card(dbc.CardBody([upload_card(info, samples, info["max_upload_bytes"]), html.Hr(),
                                                   detection_controls(), *controls])), md=4, lg=3),
                    dbc.Col([detection_panel(), *panels], md=8, lg=9),
                ], className="mt-3"), label="Explain an image", tab_id=ids.EXPLAIN_TAB),
                dbc.Tab(evaluate, label="Evaluate on a dataset", tab_id="evaluate"),
            ], id=ids.TABS, active_tab=ids.EXPLAIN_TAB),
            guide(extra_choices),
        ]),
    ], fluid=True, className="pb-5")

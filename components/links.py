"""The shareable-link bar: the link to what the page shows, a Copy button, and the link's messages."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids


def link_bar():
    return html.Div([
        html.Div(id=ids.LINK_MESSAGE, role="status"),
        dbc.InputGroup([
            dbc.InputGroupText(html.Label("Link to this view", htmlFor=ids.LINK_TEXT, className="mb-0")),
            dbc.Input(id=ids.LINK_TEXT, type="text", readonly=True, value="", size="sm",
                      placeholder="Pick or upload an image first: the link names it."),
            dbc.Button("Copy link", id=ids.LINK_COPY, color="secondary", outline=True, size="sm"),
        ], size="sm", id=f"{ids.LINK_TEXT}-group"),
        dbc.Tooltip("A link to this view: image (by its content id, no image data), threshold, picked detection, "
                    "method and its settings. Whoever opens it sees the same view from the server's cache.",
                    target=f"{ids.LINK_TEXT}-group", placement="bottom"),
        html.Span(id=ids.LINK_COPIED, className="small text-muted", **{"aria-live": "polite"}),
    ], className="mb-3")


def location():
    return dcc.Location(id=ids.LOCATION, refresh=False)

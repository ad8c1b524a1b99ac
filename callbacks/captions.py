"""Figure captions: each figure's description (written by its builder into layout.meta, see
components/describe.py) copied into its <figcaption> in the browser, so no figure travels back."""
from __future__ import annotations

from dash import Input, Output, State

from components import ids


def register(app, settings) -> None:
    for graph_id in ids.CAPTIONED:
        app.clientside_callback(
            """function (figure, name) {
                const meta = figure && figure.layout && figure.layout.meta;
                const base = (name || '').split(':')[0];
                return meta && meta.description ? base + ': ' + meta.description : base;
            }""",
            Output(ids.caption_id(graph_id), "children"), Input(graph_id, "figure"),
            State(ids.caption_id(graph_id), "children"))

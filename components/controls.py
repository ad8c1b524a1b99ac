"""Control cards: every control comes with a label and a tooltip (hover and keyboard focus)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html


def with_tooltip(label: str, control, target_id: str, tooltip: str, extra=None):
    """Label + control in a group that a dbc.Tooltip targets, linked with aria-describedby.

    dbc.Tooltip listens to mouseover and focusin on its target, and focusin bubbles: tabbing
    into the control (slider handle, dropdown input, button) shows the same help as hovering.
    """
    tip_id = f"{target_id}-tooltip"
    return html.Div([
        html.Label(label, htmlFor=target_id, className="form-label fw-semibold mb-1"),
        control,
        extra or "",
        dbc.Tooltip(tooltip, id=tip_id, target=f"{target_id}-group", placement="right", trigger="hover focus"),
    ], id=f"{target_id}-group", className="mb-3", **{"aria-describedby": tip_id})

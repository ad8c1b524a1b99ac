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


def param_control(param, control_id: str, options: list[tuple] | None = None, value=None):
    """The control a declared parameter (core.params.Param) gets, with its range, default and help:
    a dropdown for choices (`options`: (value, label) pairs, else the declared choices) and for
    "auto"-able counts (presets), a slider for a bounded float, a number box for an int. The server
    validates whatever comes back against the same declaration."""
    from dash import dcc
    value = param.default if value is None else value
    if param.kind == "choice" or param.choices_from or param.auto:
        if options is None:
            values = list(param.choices) or sorted({*param.presets, *([param.default] if param.default is not None
                                                                       else [])})
            options = [(v, str(v)) for v in values] + ([("auto", "auto")] if param.auto else [])
        control = dcc.Dropdown(id=control_id, options=[{"label": label, "value": v} for v, label in options],
                               value=value, clearable=param.optional, placeholder="default")
    elif param.kind == "float" and param.min is not None and param.max is not None:
        span = param.max - param.min
        control = dcc.Slider(id=control_id, min=param.min, max=param.max, value=value,
                             step=param.step or (0.5 if span > 10 else 0.01 if span <= 1 else 0.1),
                             marks={param.min: f"{param.min:g}", param.max: f"{param.max:g}"},
                             tooltip={"placement": "bottom"})
    elif param.kind in ("int", "float"):
        control = dcc.Input(id=control_id, type="number", min=param.min, max=param.max,
                            step=param.step or (1 if param.kind == "int" else "any"), value=value,
                            placeholder="default" if param.optional else None, className="form-control")
    else:
        control = dcc.Input(id=control_id, type="text", value=value, className="form-control")
    return with_tooltip(param.label or param.name, control, control_id, param.help)

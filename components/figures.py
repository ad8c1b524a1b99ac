"""Pure figure builders: data in, plotly figure out (tests call them without a browser)."""
from __future__ import annotations

import hashlib

import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = qualitative.Dark24


def label_colour(label: str) -> str:
    """A stable colour per class name (the same in every figure and session)."""
    return PALETTE[int(hashlib.md5(label.encode()).hexdigest(), 16) % len(PALETTE)]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def image_figure(src: str, width: int, height: int, thumb_width: int, thumb_height: int) -> go.Figure:
    """The image in original-pixel coordinates (a downscaled copy is shown, scaled back by dx/dy)."""
    fig = go.Figure(go.Image(source=src, x0=0, y0=0, dx=width / thumb_width, dy=height / thumb_height,
                             hoverinfo="skip", name="image"))
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain")
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), showlegend=False, dragmode=False, hovermode="closest",
                      uirevision="image", height=min(640, max(320, int(640 * height / max(width, 1)))))
    return fig


def add_boxes(fig: go.Figure, detections: list[dict], selected: int | None = None) -> go.Figure:
    """One closed, lightly filled outline per detection (hover/click on the fill), selected one on top.
    Traces and labels are added in one call each: plotly copies the figure's lists on every add, so
    adding them one by one grows as the square of the boxes (300 boxes: seconds)."""
    from components.describe import boxes_sentence, note
    note(fig, boxes_sentence(detections, selected))
    ordered = sorted(detections, key=lambda d: d["index"] == selected)
    traces, labels = [], []
    for det in ordered:
        x0, y0, x1, y1 = det["box"]
        colour, chosen = label_colour(det["label"]), det["index"] == selected
        traces.append(go.Scatter(
            x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines", fill="toself",
            fillcolor=_rgba(colour, 0.25 if chosen else 0.04),
            line=dict(color=colour, width=5 if chosen else 2), name=f"det-{det['index']}",
            customdata=[det["index"]] * 5, hoveron="fills+points",
            hovertemplate=(f"<b>{det['label']}</b> {det['score']:.3f}<br>query {det['index']}<br>"
                           f"box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}] px<extra></extra>")))
        labels.append(go.layout.Annotation(
            x=x0, y=y0, text=f"{det['label']} {det['score']:.2f}", showarrow=False, xanchor="left", yanchor="bottom",
            font=dict(color="white", size=11), bgcolor=colour, borderpad=1,
            opacity=1.0 if chosen or selected is None else 0.8))
    fig.add_traces(traces)
    fig.update_layout(annotations=[*fig.layout.annotations, *labels])
    return fig


def add_truth(fig: go.Figure, truth: list[dict]) -> go.Figure:
    """Ground-truth boxes (demo scenes) as dashed white outlines, hover says which."""
    for obj in truth:
        x0, y0, x1, y1 = obj["box"]
        fig.add_trace(go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines",
                                 line=dict(color="white", width=2, dash="dash"), name="truth",
                                 hovertemplate=f"truth: {obj['label']}<extra></extra>"))
    return fig

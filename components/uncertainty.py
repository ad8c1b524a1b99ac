"""The MC-Dropout card (left controls) and panel: score histograms beside each box, the picked
detection's histogram, statistics and sampled boxes.

Insets are drawn in the image's own pixel coordinates (filled polygons on the image axes), not as
extra axes in paper coordinates: the image keeps its aspect ratio inside the plot area, so where a
box lands in paper coordinates is only known in the browser, while image pixels always line up.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

from components import ids
from components.describe import described
from components.controls import with_tooltip
from components.figures import _rgba as rgba, label_colour

MAX_INSETS = 12      # histograms drawn beside boxes: the picked one and the highest scores
INSET_BINS = 10
DETAIL_BINS = 20
FAR_FROM_TRAINED = 0.1  # a rate this far from the trained one gets a note

GUIDE = [("Dropout probability for MC Dropout",
          "MC Dropout reads uncertainty off the spread of scores and boxes over passes with random dropout. "
          "At the rate the model was trained with, that spread approximates the model's own (epistemic) "
          "uncertainty; a much higher rate measures how the model reacts to noise it never saw, and a rate of 0 "
          "gives the deterministic model every time. Identity across samples: DETR's query slots can swap "
          "objects between passes, so statistics are shown both per slot and after Hungarian matching to the "
          "deterministic detections.")]


def uncertainty_controls(trained: float, declared):
    """The left-card controls: samples, dropout rate (with the trained rate beside it), seed, Run;
    ranges, defaults and help from their declarations (core.params.UNCERTAINTY)."""
    samples, dropout, seed = declared
    return html.Div([
        html.Hr(),
        dcc.Store(id=ids.MC_TRAINED, data=trained),
        with_tooltip(samples.label, dcc.Slider(
            id=ids.MC_SAMPLES, min=samples.min, max=samples.max, step=1, value=samples.default,
            marks={v: str(v) for v in (samples.min, 25, 50, samples.max)}, tooltip={"placement": "bottom"}),
            ids.MC_SAMPLES, samples.help),
        with_tooltip(dropout.label, dcc.Slider(
            id=ids.MC_DROPOUT, min=dropout.min, max=dropout.max, step=0.01, value=round(trained, 2),
            marks={round(dropout.max * k / 3, 2): f"{dropout.max * k / 3:g}" for k in range(4)},
            tooltip={"placement": "bottom"}), ids.MC_DROPOUT, dropout.help,
            extra=html.Div(dropout_note(trained, trained), id=ids.MC_DROPOUT_NOTE, className="small")),
        with_tooltip(seed.label, dcc.Input(id=ids.MC_SEED, type="number", min=seed.min, max=seed.max, step=1,
                                           value=seed.default, className="form-control"), ids.MC_SEED, seed.help),
        html.Div([dbc.Button("Run MC Dropout", id=ids.MC_RUN, color="primary", className="me-2"),
                  dbc.Button("Cancel", id=ids.MC_CANCEL, color="secondary", outline=True, style={"display": "none"})]),
        dbc.Tooltip("Sample the detections of this image with dropout on (background job with progress). "
                    "The threshold and the picked detection only filter the result.", target=ids.MC_RUN),
    ])


def dropout_note(p, trained: float) -> list:
    """The trained rate beside the slider, and a warning when the chosen rate is far from it."""
    parts = [html.Span(f"Trained rate: {trained:.2f}.", className="text-muted")]
    if p is None:
        return parts
    if p == 0:
        parts.append(html.Span(" 0 turns dropout off: every sample is the deterministic model.",
                               className="text-warning-emphasis"))
    elif abs(p - trained) >= max(FAR_FROM_TRAINED, trained):
        parts.append(html.Span(f" {p:.2f} is far from it: the spread then shows the reaction to noise the model "
                               "was not trained with, not its calibrated uncertainty.",
                               className="text-warning-emphasis"))
    return parts


def uncertainty_panel():
    return dbc.Card([
        dbc.CardHeader("Uncertainty (MC Dropout)"),
        dbc.CardBody([
            dbc.Progress(id=ids.MC_PROGRESS, value=0, max=1, striped=True, animated=True,
                         style={"display": "none"}, className="mb-2"),
            html.Div(id=ids.MC_INFO, className="mb-2", children="Press Run MC Dropout to sample the detections."),
            with_tooltip("Identity across samples", dbc.RadioItems(
                id=ids.MC_IDENTITY, value="slot", inline=True,
                options=[{"label": "query slot", "value": "slot"},
                         {"label": "Hungarian-matched", "value": "matched"}]),
                ids.MC_IDENTITY, "Which sample output counts as 'this detection': the same DETR query slot, or the "
                                 "slot matched to it by Hungarian matching (class, L1 and GIoU cost, as in DETR "
                                 "training). They differ when slots swap objects between samples; the table shows "
                                 "both."),
            described(dcc.Graph(id=ids.MC_FIGURE, config={"displaylogo": False, "scrollZoom": False},
                                style={"display": "none"}), ids.caption_id(ids.MC_FIGURE), "MC-Dropout samples"),
            dbc.Row([
                dbc.Col(described(dcc.Graph(id=ids.MC_HISTOGRAM, config={"displayModeBar": False}),
                                  ids.caption_id(ids.MC_HISTOGRAM), "Score histogram of the picked detection"), md=6),
                dbc.Col(html.Div(id=ids.MC_STATS), md=6),
            ], id=ids.MC_DETAIL, style={"display": "none"}, className="mt-2"),
            dcc.Store(id=ids.MC_RESULT), dcc.Store(id=ids.MC_PREVIEW), dcc.Store(id=ids.MC_PREVIEW_SHOWN),
            dcc.Store(id=ids.MC_PREVIEW_VIEW), dcc.Store(id=ids.MC_CANCELLED),
        ]),
    ], className="mb-3")


# ---- figures -----------------------------------------------------------------------------------

def histogram(scores, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of scores over [0, 1] in equal bins (the last bin includes 1)."""
    return np.histogram(np.asarray(scores, dtype=np.float64), bins=np.linspace(0.0, 1.0, bins + 1))


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inset_box(box, width: int, height: int, taken=()) -> tuple[float, float, float, float]:
    """Where a box's histogram goes, in image pixels (x0, y0, x1, y1), always inside the image:
    right of the box (left of it when the right edge is too close), top-aligned with it; if that
    covers an inset in `taken` (duplicate detections share a place), the nearest free slot one
    inset height further down or up, on either side."""
    side = min(width, height)
    w, h, gap = 0.22 * side, 0.13 * side, 0.01 * side
    x0, y0, x1, _ = box
    right, left = x1 + gap, x0 - gap - w
    sides = [right, left] if right + w <= width else [left, right]
    candidates = [(min(max(x, 0.0), max(width - w, 0.0)), min(max(y0 + k * (h + gap), 0.0), max(height - h, 0.0)))
                  for k in (0, 1, -1, 2, -2, 3, -3) for x in sides]
    rects = [(x, y, x + w, y + h) for x, y in candidates]
    return next((r for r in rects if not any(_overlaps(r, t) for t in taken)), rects[0])


def add_histogram_insets(fig: go.Figure, detections: list[dict], width: int, height: int,
                         bins: int = INSET_BINS) -> go.Figure:
    """A small histogram of each detection's sample scores beside its box, coloured like the box.

    detections: dicts with index, label, box and scores (one per sample). Per detection, a white
    background (`inset-N`) and the bars (`hist-N`): one filled polygon per bin, 6 points each
    (5 corners and a gap), every point carrying its bin's [count, low, high] for the hover.
    Scatter polygons, not go.Bar: plotly draws all bars below all scatter traces, so bars would
    hide under the backgrounds and boxes.
    """
    from components.describe import note
    note(fig, f"Beside {min(len(detections), MAX_INSETS)} boxes: a histogram of the box's score over the "
              f"{len(detections[0]['scores']) if detections else 0} MC-Dropout samples.")
    edges, taken = np.linspace(0.0, 1.0, bins + 1), []
    for det in detections[:MAX_INSETS]:
        counts, _ = histogram(det["scores"], bins)
        colour, total = label_colour(det["label"]), len(det["scores"])
        x0, y0, x1, y1 = inset_box(det["box"], width, height, taken)
        taken.append((x0, y0, x1, y1))
        pad = 0.08 * (y1 - y0)
        fig.add_trace(go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines", fill="toself",
                                 fillcolor="rgba(255,255,255,0.95)", line=dict(color=colour, width=1),
                                 hoverinfo="skip", name=f"inset-{det['index']}"))
        step, base = (x1 - x0) / bins, y1 - pad
        tops = base - counts / max(counts.max(), 1) * (y1 - y0 - 2 * pad)  # the image's y axis points down
        xs, ys, data = [], [], []
        for b in range(bins):
            left, right = x0 + (b + 0.05) * step, x0 + (b + 0.95) * step
            xs += [left, left, right, right, left, None]
            ys += [base, tops[b], tops[b], base, base, None]
            data += [[int(counts[b]), edges[b], edges[b + 1]]] * 6
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", fill="toself", fillcolor=colour, line=dict(color=colour, width=1),
            hoveron="points", customdata=data, name=f"hist-{det['index']}",
            hovertemplate=(f"<b>{det['label']}</b> (query {det['index']})<br>%{{customdata[0]}} of {total} samples"
                           "<br>score %{customdata[1]:.2f}-%{customdata[2]:.2f}<extra></extra>")))
    return fig


def add_sampled_boxes(fig: go.Figure, det: dict, sampled_boxes, box_mean) -> go.Figure:
    """The picked detection's box in every sample, drawn faintly, and their mean box dashed."""
    xs, ys = [], []
    for x0, y0, x1, y1 in sampled_boxes:
        xs += [x0, x1, x1, x0, x0, None]
        ys += [y0, y0, y1, y1, y0, None]
    colour = label_colour(det["label"])
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=rgba(colour, 0.35), width=1),
                             hoverinfo="skip", name="sampled-boxes"))
    x0, y0, x1, y1 = box_mean
    fig.add_trace(go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines",
                             line=dict(color=colour, width=2, dash="dash"), name="mean-box",
                             hovertemplate=(f"mean of {len(sampled_boxes)} sampled boxes<br>"
                                            f"[{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}] px<extra></extra>")))
    return fig


def score_histogram(scores, label: str, det_score: float, threshold: float, bins: int = DETAIL_BINS) -> go.Figure:
    """The picked detection's score over the samples: counts per bin, mean ± std band, the
    deterministic score and the threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    counts, edges = histogram(scores, bins)
    colour, mean, std = label_colour(label), float(scores.mean()), float(scores.std())
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges) * 0.95,
                           marker_color=colour, name="histogram", customdata=np.stack([edges[:-1], edges[1:]], -1),
                           hovertemplate="%{y} samples<br>score %{customdata[0]:.2f}-%{customdata[1]:.2f}"
                                         "<extra></extra>"))
    fig.add_vrect(x0=max(mean - std, 0), x1=min(mean + std, 1), fillcolor=colour, opacity=0.15, line_width=0)
    fig.add_vline(x=mean, line=dict(color=colour, dash="dash"), annotation_text="mean",
                  annotation_position="top left")
    fig.add_vline(x=det_score, line=dict(color="black"), annotation_text="deterministic",
                  annotation_position="top right")
    fig.add_vline(x=threshold, line=dict(color="crimson", dash="dot"), annotation_text="threshold",
                  annotation_position="bottom right")
    fig.update_layout(height=260, margin=dict(l=40, r=10, t=30, b=40), showlegend=False, bargap=0,
                      title=dict(text=f"score over {len(scores)} samples", font=dict(size=13)))
    from components.describe import note
    peak = int(np.argmax(counts))
    note(fig, f"Histogram of the {label}'s score over {len(scores)} samples: mean {mean:.3f}, std {std:.3f}, "
              f"deterministic {det_score:.3f}; most samples ({int(counts[peak])}) between {edges[peak]:.2f} and "
              f"{edges[peak + 1]:.2f}.")
    fig.update_xaxes(range=[0, 1], title="score (probability of its label)")
    fig.update_yaxes(title="samples", rangemode="tozero")
    return fig


def _coords(values, digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def stats_table(stats: dict[str, dict], det_score: float, threshold: float, swap: float):
    """Both identities side by side. stats: {"slot": ..., "matched": ...}, each with score_mean,
    score_std, entropy, mutual_information, variation_ratio, label_counts, box_mean, box_std,
    above (fraction of samples at or over `threshold`)."""
    rows = [
        ("score mean ± std", lambda s: f"{s['score_mean']:.3f} ± {s['score_std']:.3f}"),
        ("predictive entropy (nats)", lambda s: f"{s['entropy']:.3f}"),
        ("mutual information (epistemic, nats)", lambda s: f"{s['mutual_information']:.4f}"),
        ("variation ratio", lambda s: f"{s['variation_ratio']:.3f}"),
        ("top class in samples", lambda s: ", ".join(f"{k} {v}" for k, v in s["label_counts"].items())),
        ("box mean x0, y0, x1, y1 (px)", lambda s: _coords(s["box_mean"])),
        ("box std x0, y0, x1, y1 (px)", lambda s: _coords(s["box_std"])),
        (f"samples with score ≥ {threshold:.2f}", lambda s: f"{100 * s['above']:.0f}%"),
    ]
    head = html.Thead(html.Tr([html.Th(""), html.Th("query slot"), html.Th("Hungarian-matched")]))
    body = [html.Tr([html.Td("deterministic score"), html.Td(f"{det_score:.3f}", colSpan=2)])]
    body += [html.Tr([html.Td(name), html.Td(fmt(stats["slot"])), html.Td(fmt(stats["matched"]))])
             for name, fmt in rows]
    body.append(html.Tr([html.Td("slot swap (samples where slot and match differ)"),
                         html.Td(f"{100 * swap:.0f}%", colSpan=2)]))
    return dbc.Table([head, html.Tbody(body)], size="sm", bordered=True, className="small mb-0")

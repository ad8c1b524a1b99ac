"""The Compare view: every method over the same image, scores under each, ranking, sanity check, export.

Maps arrive here already normalised to [0, 1] (one shared normalisation, chosen in the view), so
every panel uses the same colour scale. Panels and the exported PNG are composed with PIL: the
image blended with the coloured map. Hover: each panel has a transparent coarse heatmap whose
customdata holds every method's value at that cell, so hovering any panel shows all of them.
"""
from __future__ import annotations

import base64
import io
import math

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import dcc, html
from PIL import Image, ImageDraw, ImageFont

from components import ids
from components.controls import with_tooltip
from components.describe import described, description, note, top_cell
from components.tables import table
from components.heatmaps import SEQUENTIAL, colorize, resize_map

PANEL_SIDE = 256      # longest side of a panel's picture, px
HOVER_CELLS = 32      # hover grid cells along the longest side
READING = ("How to read the scores: Deletion AUC is the detection's confidence, relative to the original, as the "
           "pixels the map ranks highest are removed first (blurred out): lower means the map found what the "
           "detection needs. Insertion AUC puts them back first onto the blurred image: higher is better. "
           "Pointing game: share of the map's positive mass inside the detected box (and inside the true box on "
           "generated scenes): higher means the map stays on the object. Methods are ordered by their mean rank "
           "over these columns.")
SCORE_COLUMNS = [("rank", "#"), ("method", "method"), ("deletion_auc", "deletion AUC ↓"),
                 ("insertion_auc", "insertion AUC ↑"), ("pointing_game", "pointing game ↑"),
                 ("pointing_game_gt", "pointing (truth) ↑"), ("mean_rank", "mean rank")]


def compare_panel(normalisations: dict[str, str]):
    """The Compare card (main area). normalisations: name -> one-line explanation."""
    norm_help = " ".join(f"{text}." for text in normalisations.values())
    return dbc.Card([
        dbc.CardHeader("Compare methods for the picked detection"),
        dbc.CardBody([
            dbc.Row([
                dbc.Col(html.Div([
                    dbc.Button("Compare", id=ids.COMPARE, color="primary", className="me-2"),
                    dbc.Button("Cancel", id=ids.COMPARE_CANCEL, color="secondary", outline=True,
                               style={"display": "none"}, className="me-2"),
                    dbc.Tooltip("Compute every method for the picked detection and score each map (background job; "
                                "maps already computed are reused).", target=ids.COMPARE),
                ]), width="auto"),
                dbc.Col(with_tooltip("Normalisation", dbc.RadioItems(
                    id=ids.COMPARE_NORM, value="minmax", inline=True,
                    options=[{"label": name, "value": name} for name in normalisations]),
                    ids.COMPARE_NORM, "One scale for every panel, so they can be compared. " + norm_help)),
            ], align="center"),
            dbc.Progress(id=ids.COMPARE_PROGRESS, value=0, max=1, striped=True, animated=True,
                         style={"display": "none"}, className="mb-2"),
            html.Div(id=ids.COMPARE_INFO, className="mb-2", children="Pick a detection, then press Compare."),
            html.Div(id=ids.COMPARE_GRID, className="row g-2 mb-3"),
            html.Div(id=ids.COMPARE_TABLE_GROUP, style={"display": "none"}, children=[
                table(ids.COMPARE_TABLE, SCORE_COLUMNS, "Faithfulness scores and ranking of the methods",
                      selectable=False),
                html.P(READING, className="small text-muted mt-1"),
                html.Div([
                    dbc.Button("Download PNG", id=ids.COMPARE_EXPORT_PNG, size="sm", color="secondary",
                               outline=True, className="me-2"),
                    dbc.Tooltip("The panels, titles and scores as one PNG image.", target=ids.COMPARE_EXPORT_PNG),
                    dbc.Button("Download JSON", id=ids.COMPARE_EXPORT_JSON, size="sm", color="secondary",
                               outline=True, className="me-2"),
                    dbc.Tooltip("Every score, curve, ranking and setting (and the sanity check, if run) as JSON.",
                                target=ids.COMPARE_EXPORT_JSON),
                    dbc.Button("Sanity check", id=ids.SANITY, size="sm", color="warning", className="me-2"),
                    dbc.Button("Cancel", id=ids.SANITY_CANCEL, size="sm", color="secondary", outline=True,
                               style={"display": "none"}),
                    dbc.Tooltip("Cascading model randomisation (Adebayo et al. 2018): randomise the weights from the "
                                "top layer down and see how much each map changes. A map that stays the same does "
                                "not show what the model learned.", target=ids.SANITY),
                ], className="mb-2"),
            ]),
            dbc.Progress(id=ids.SANITY_PROGRESS, value=0, max=1, striped=True, animated=True,
                         style={"display": "none"}, className="mb-2"),
            html.Div(id=ids.SANITY_INFO),
            described(dcc.Graph(id=ids.SANITY_FIGURE, config={"displaylogo": False}, style={"display": "none"}),
                      ids.caption_id(ids.SANITY_FIGURE), "Sanity check"),
            dcc.Store(id=ids.COMPARE_RESULT), dcc.Store(id=ids.SANITY_RESULT), dcc.Store(id=ids.COMPARE_IG_CHOSEN),
            dcc.Store(id=ids.COMPARE_PREVIEW), dcc.Store(id=ids.COMPARE_PREVIEW_SHOWN),
            dcc.Store(id=ids.COMPARE_PREVIEW_VIEW), dcc.Store(id=ids.COMPARE_CANCELLED),
            dcc.Download(id=ids.COMPARE_DOWNLOAD_PNG), dcc.Download(id=ids.COMPARE_DOWNLOAD_JSON),
        ]),
    ], className="mb-3")


def display_size(width: int, height: int, side: int = PANEL_SIDE) -> tuple[int, int]:
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def overlay(image: Image.Image, values: np.ndarray, opacity: float = 0.5, side: int = PANEL_SIDE) -> Image.Image:
    """The image (longest side `side`) blended with a [0, 1] map coloured on the shared scale."""
    w, h = display_size(*image.size, side)
    colours = colorize(resize_map(values, w, h), SEQUENTIAL, 0.0, 1.0)
    return Image.blend(image.convert("RGB").resize((w, h), Image.BILINEAR), Image.fromarray(colours), opacity)


def hover_grid(maps: dict[str, np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, values [rows, cols, methods]): every map on one coarse grid over the image's pixels."""
    cols, rows = display_size(width, height, HOVER_CELLS)
    values = np.stack([resize_map(m, cols, rows) for m in maps.values()], -1)
    return (np.arange(cols) + 0.5) * width / cols, (np.arange(rows) + 0.5) * height / rows, values


def _outline(box, colour: str, dash: str = "solid", name: str = "box") -> go.Scatter:
    x0, y0, x1, y1 = box
    return go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines", name=name, hoverinfo="skip",
                      line=dict(color=colour, width=2, dash=dash))


def panel_figure(picture: Image.Image, width: int, height: int, method: int, labels: list[str], grid,
                 box=None, gt_box=None) -> go.Figure:
    """One panel: `picture` (an overlay) in image pixels, the detected (and true) box, and a hover
    that lists every method's value at the cell, this panel's method (index `method`) first."""
    xs, ys, values = grid
    order = [method] + [k for k in range(len(labels)) if k != method]
    lines = [f"{'<b>' if k == method else ''}{labels[k]}: %{{customdata[{k}]:.2f}}{'</b>' if k == method else ''}"
             for k in order]
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    fig = go.Figure(go.Image(source="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                             x0=0, y0=0, dx=width / picture.width, dy=height / picture.height, hoverinfo="skip"))
    # customdata as nested lists: plotly.js reads a 3-D typed array (plotly.py's numpy encoding) as no values
    fig.add_trace(go.Heatmap(z=values[..., method], x=xs, y=ys, customdata=np.round(values, 3).tolist(),
                             opacity=0, showscale=False,
                             name="values", hovertemplate="x %{x:.0f}, y %{y:.0f} px<br>" + "<br>".join(lines)
                             + "<extra></extra>"))
    if gt_box is not None:
        fig.add_trace(_outline(gt_box, "white", "dash", "truth"))
    if box is not None:
        fig.add_trace(_outline(box, "#ff00ff"))
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain")
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), height=240, showlegend=False, dragmode=False,
                      hovermode="closest")
    top, x, y = top_cell(values[..., method], xs, ys)
    note(fig, f"{labels[method]} map over the image (normalised): highest {top:.2f} at x {x:.0f}, y {y:.0f} px.")
    return fig


def fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def score_line(scores: dict, steps: int | None = None) -> str:
    """A panel's scores; "early" while they come from coarser curves than the comparison's `steps`."""
    line = (f"deletion {fmt(scores['deletion_auc'])} ↓ · insertion {fmt(scores['insertion_auc'])} ↑ · "
            f"pointing {fmt(scores['pointing_game'])} ↑")
    line += f" · truth {fmt(scores['pointing_game_gt'])} ↑" if "pointing_game_gt" in scores else ""
    coarse = scores.get("steps", steps)
    return line + (f" (early: {coarse} of {steps} steps)" if steps and coarse < steps else "")


def panel(title: str, figure: go.Figure, lines: list[str], graph_id) -> html.Div:
    """One equal-size grid cell: title, figure, scores and settings under it."""
    return html.Div(dbc.Card([
        dbc.CardHeader(title, className="py-1 fw-semibold"),
        dcc.Graph(id=graph_id, figure=figure, config={"displayModeBar": False}),
        html.Div([html.Div(line) for line in lines], className="small px-2 py-1"),
    ], className="h-100"), className="col-12 col-md-6 col-xl-4 compare-panel", role="figure",
        **{"aria-label": f"{title}: {description(figure)}"})  # the figure's name and words (components/describe.py)


def pending_panel(title: str, text: str) -> html.Div:
    """A grid cell of a method whose map a running comparison has not reached yet."""
    return html.Div(dbc.Card([
        dbc.CardHeader(title, className="py-1 fw-semibold"),
        html.Div(text, className="small text-muted px-2 py-4 text-center"),
    ], className="h-100"), className="col-12 col-md-6 col-xl-4 compare-pending")


def ranking_rows(ranking: list[dict], scores: dict[str, dict], labels: dict[str, str]) -> list[dict]:
    """Rows of the scores table, best first (the ranking's order)."""
    rows = []
    for k, r in enumerate(ranking, start=1):
        s = scores[r["method"]]
        rows.append({"rank": k, "method": labels.get(r["method"], r["method"]), "mean_rank": f"{r['mean_rank']:.2f}",
                     **{c: fmt(s.get(c)) for c in ("deletion_auc", "insertion_auc", "pointing_game",
                                                   "pointing_game_gt")}})
    return rows


def sanity_figure(steps: list[str], rho: dict[str, list[float]], threshold: float) -> go.Figure:
    """Spearman rho of each method's map with its original, per cumulative randomisation step."""
    fig = go.Figure([go.Scatter(x=steps, y=values, mode="lines+markers", name=label) for label, values in rho.items()])
    fig.add_hline(y=threshold, line_dash="dot", line_color="grey", annotation_text=f"flagged above {threshold}",
                  annotation_position="bottom right")
    note(fig, "Spearman rho of each method's map with its original, per randomisation step: " + "; ".join(
        f"{label} {values[-1]:.2f} at the last step" for label, values in rho.items() if values) + ".")
    fig.update_layout(height=360, margin=dict(l=40, r=10, t=10, b=110), yaxis_title="Spearman rho with original",
                      legend=dict(orientation="h", y=-0.4),
                      xaxis_title="randomised so far (from the top down, cumulative)", yaxis_range=[-1.05, 1.05])
    return fig


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without scalable default font
        return ImageFont.load_default()


def export_png(pictures: list[tuple[str, Image.Image, list[str]]], title: str, columns: int = 3) -> bytes:
    """Panels (title, picture, text lines under it) in a grid of equal cells, under a title line."""
    font, small = _font(16), _font(12)
    pw = max(p.width for _, p, _ in pictures)
    ph = max(p.height for _, p, _ in pictures)
    text_h = 22 + 16 * max(len(lines) for _, _, lines in pictures)
    cell_w, cell_h = pw + 16, ph + text_h + 16
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (columns * cell_w, 34 + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), title, fill="black", font=font)
    for k, (name, picture, lines) in enumerate(pictures):
        x, y = 8 + (k % columns) * cell_w, 34 + (k // columns) * cell_h
        draw.text((x, y), name, fill="black", font=font)
        sheet.paste(picture, (x, y + 22))
        for j, line in enumerate(lines):
            draw.text((x, y + 26 + ph + 16 * j), line, fill=(60, 60, 60), font=small)
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return buf.getvalue()

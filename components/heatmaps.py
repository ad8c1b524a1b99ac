"""Heatmap overlays: a server-coloured PNG for the picture, a coarse transparent heatmap for hover.

Plotly draws a PNG far faster than a large go.Heatmap; the hover trace is at most HOVER_CELLS
per side and carries the map's real values (not just colours) and the colour bar.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

HOVER_CELLS = 48
SEQUENTIAL, DIVERGING = "Jet", "RdBu_r"


def _scale_stops(name: str) -> tuple[np.ndarray, np.ndarray]:
    stops = get_colorscale(name)
    pos = np.array([s for s, _ in stops], dtype=np.float64)
    cols = np.array([hex_to_rgb(c) if c.startswith("#") else unlabel_rgb(c) for _, c in stops], dtype=np.float64)
    return pos, cols


def colorize(values: np.ndarray, scale: str, zmin: float, zmax: float) -> np.ndarray:
    """[H, W] values -> [H, W, 3] uint8 through a plotly colour scale (the one the colour bar shows)."""
    pos, cols = _scale_stops(scale)
    t = np.clip((values - zmin) / (zmax - zmin if zmax > zmin else 1.0), 0, 1)
    return np.stack([np.interp(t, pos, cols[:, c]) for c in range(3)], -1).astype(np.uint8)


def resize_map(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float map (layer grid -> display pixels)."""
    return np.asarray(Image.fromarray(np.asarray(values, dtype=np.float32), "F").resize((width, height),
                                                                                       Image.BILINEAR))


def value_range(values: np.ndarray, signed: bool) -> tuple[float, float]:
    if signed:
        bound = float(np.abs(values).max()) or 1.0
        return -bound, bound
    return float(values.min()), float(values.max()) if values.max() > values.min() else float(values.min()) + 1.0


def add_heatmap(fig: go.Figure, values: np.ndarray, width: int, height: int, opacity: float = 0.5,
                signed: bool = False, zrange: tuple[float, float] | None = None, title: str = "",
                display_side: int = 512) -> go.Figure:
    """Overlay `values` (any resolution, covering the whole image) on a figure in image pixels."""
    values = np.asarray(values, dtype=np.float64)
    zmin, zmax = zrange or value_range(values, signed)
    scale = DIVERGING if signed else SEQUENTIAL
    shown_w = max(1, min(display_side, width))
    shown_h = max(1, round(shown_w * height / width))
    rgb = colorize(resize_map(values, shown_w, shown_h), scale, zmin, zmax)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=width / shown_w, dy=height / shown_h, opacity=opacity,
                           hoverinfo="skip", name="heatmap-image"))
    rows, cols = values.shape
    step_r, step_c = max(1, -(-rows // HOVER_CELLS)), max(1, -(-cols // HOVER_CELLS))
    coarse = values[::step_r, ::step_c]
    ys = (np.arange(coarse.shape[0]) * step_r + step_r / 2) * height / rows
    xs = (np.arange(coarse.shape[1]) * step_c + step_c / 2) * width / cols
    from components.describe import note, top_cell
    top, x, y = top_cell(values, (np.arange(cols) + 0.5) * width / cols, (np.arange(rows) + 0.5) * height / rows)
    note(fig, f"Heatmap{' of ' + title if title else ''} over the image: highest value {top:.4g} at x {x:.0f}, "
              f"y {y:.0f} px.")
    fig.add_trace(go.Heatmap(z=coarse, x=xs, y=ys, colorscale=scale, zmin=zmin, zmax=zmax, opacity=0.01,  # 0 would disable hover
                             name="heatmap", showscale=True, colorbar=dict(title=title, thickness=12, len=0.8),
                             hovertemplate="x %{x:.0f}, y %{y:.0f} px<br>value %{z:.4g}<extra></extra>"))
    return fig

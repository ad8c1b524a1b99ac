"""Figures in words: each figure builder notes what it drew (`note`) in the figure's layout.meta,
and the page shows that text as the figure's caption (`described`): the accessible name and
description a screen reader gives for a plot it cannot read."""
from __future__ import annotations

import numpy as np
from dash import html


def note(fig, sentence: str):
    """Add a sentence to the figure's description (kept in layout.meta["description"])."""
    meta = dict(fig.layout.meta or {})
    meta["description"] = " ".join(filter(None, [meta.get("description", ""), sentence]))
    fig.update_layout(meta=meta)
    return fig


def description(fig) -> str:
    meta = fig.layout.meta if hasattr(fig, "layout") else (fig or {}).get("layout", {}).get("meta")
    return (meta or {}).get("description", "")


def top_cell(values, xs, ys) -> tuple[float, float, float]:
    """(highest value, its x, its y) of a map on a grid whose cell centres are xs (columns), ys (rows)."""
    values = np.asarray(values, dtype=np.float64)
    r, c = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return float(values[r, c]), float(xs[c]), float(ys[r])


def boxes_sentence(detections: list[dict], selected) -> str:
    if not detections:
        return "No detection above the threshold."
    best = max(detections, key=lambda d: d["score"])
    text = (f"{len(detections)} detection{'s' if len(detections) != 1 else ''} drawn as boxes; highest: "
            f"{best['label']} {best['score']:.2f} at {_box(best['box'])}.")
    picked = next((d for d in detections if d["index"] == selected), None)
    return text + (f" Picked: {picked['index']}: {picked['label']} {picked['score']:.2f} at {_box(picked['box'])}."
                   if picked else "")


def _box(box) -> str:
    return "x {:.0f}-{:.0f}, y {:.0f}-{:.0f} px".format(box[0], box[2], box[1], box[3])


def described(graph, caption_id: str, name: str):
    """The graph in a <figure> whose caption (visually hidden; filled by callbacks/captions.py from the
    figure's description) names it."""
    return html.Figure([graph, html.Figcaption(name, id=caption_id, className="visually-hidden")],
                       className="mb-0")

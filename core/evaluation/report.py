"""An evaluation's outputs: figures (plotly), a standalone HTML report that reads offline
(plotly.js embedded once), and a CSV with one row per detection.

The figure builders take the result dict of core/evaluation/evaluate.py only, so a dashboard tab
can show the same figures.
"""
from __future__ import annotations

import csv
import html
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.evaluation.evaluate import METRICS

METRIC_LABELS = {"pointing_game": "Pointing game (hit)", "energy_pointing": "Energy pointing",
                 "deletion_auc": "Deletion AUC (lower better)", "insertion_auc": "Insertion AUC",
                 "sensitivity_max": "Sensitivity max (lower better)"}
PLAIN, MC = "#1f77b4", "#d62728"


def reliability_figure(result: dict) -> go.Figure:
    """Precision against mean confidence per bin, plain and MC-Dropout, over the diagonal."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "gray"},
                               name="perfect calibration", hoverinfo="skip"))
    for name, block, colour in (("plain", result, PLAIN), ("MC-Dropout mean", result.get("mc"), MC)):
        if not block:
            continue
        bins = [b for b in block["reliability"] if b["count"]]
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["precision"] for b in bins], mode="lines+markers", name=name,
            marker={"size": [6 + 14 * (b["count"] / max(x["count"] for x in bins)) ** 0.5 for b in bins],
                    "color": colour},
            customdata=[[b["low"], b["high"], b["count"]] for b in bins],
            hovertemplate="confidence %{customdata[0]:.1f}-%{customdata[1]:.1f}: %{customdata[2]} detections<br>"
                          "mean confidence %{x:.3f}, precision %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title=f"Reliability (detections with confidence > {result['threshold']:g}; marker size: count)",
                      xaxis={"title": "mean confidence", "range": [0, 1]},
                      yaxis={"title": "precision (IoU >= 0.5)", "range": [0, 1.02]}, height=420)
    return fig


def threshold_figure(result: dict) -> go.Figure:
    """D-ECE, LA-ECE and OCE against the confidence threshold, plain and MC-Dropout."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("D-ECE", "LA-ECE", "OCE"))
    for name, block, colour in (("plain", result, PLAIN), ("MC-Dropout mean", result.get("mc"), MC)):
        if not block:
            continue
        curve = block["by_threshold"]
        for col, key in enumerate(("d_ece", "la_ece", "oce"), start=1):
            fig.add_trace(go.Scatter(x=curve["thresholds"], y=curve[key], mode="lines+markers", name=name,
                                     line={"color": colour}, showlegend=col == 1, legendgroup=name,
                                     customdata=curve["detections"],
                                     hovertemplate="threshold %{x:.2f}: %{y:.4f} (%{customdata} detections)"
                                                   "<extra>" + name + "</extra>"), row=1, col=col)
    fig.update_xaxes(title_text="confidence threshold")
    fig.update_layout(title="Calibration error against the confidence threshold (lower is better)", height=380)
    return fig


def per_class_figure(result: dict) -> go.Figure:
    names = list(result["per_class_ap"])
    fig = go.Figure([go.Bar(x=names, y=[result["per_class_ap"][n] for n in names], name="AP .50:.95"),
                     go.Bar(x=names, y=[result["per_class_ap50"].get(n) for n in names], name="AP50")])
    fig.update_layout(title="Per-class AP (COCO)", yaxis={"range": [0, 1], "title": "AP"}, barmode="group",
                      height=380)
    return fig


def explanation_figure(result: dict) -> go.Figure | None:
    """Per metric: each method's per-detection values as a box plot, and its mean with the 95%
    bootstrap interval as a diamond with error bars."""
    methods = list(result.get("explanations") or {})
    if not methods:
        return None
    fig = make_subplots(rows=1, cols=len(METRICS), subplot_titles=[METRIC_LABELS[m] for m in METRICS])
    for col, metric in enumerate(METRICS, start=1):
        for k, name in enumerate(methods):
            values = [r[metric] for r in result["explained"] if r["method"] == name and r[metric] is not None]
            s = result["explanations"][name][metric]
            colour = qualitative.Plotly[k % len(qualitative.Plotly)]
            fig.add_trace(go.Box(y=values, name=name, boxpoints="outliers", marker={"color": colour},
                                 legendgroup=name, showlegend=False), row=1, col=col)
            if s["mean"] is not None:
                low, high = s["low"] if s["low"] is not None else s["mean"], s["high"] if s["high"] is not None \
                    else s["mean"]
                fig.add_trace(go.Scatter(
                    x=[name], y=[s["mean"]], mode="markers", marker={"symbol": "diamond", "size": 10, "color": "black"},
                    error_y={"type": "data", "symmetric": False, "array": [high - s["mean"]],
                             "arrayminus": [s["mean"] - low]}, showlegend=False,
                    hovertemplate=f"{name}: mean %{{y:.3f}}, 95% interval {low:.3f}-{high:.3f}, n = {s['n']}"
                                  "<extra></extra>"), row=1, col=col)
    fig.update_layout(title="Explanation quality over the explained detections (diamond: mean, bars: 95% "
                            "bootstrap interval)", height=450, showlegend=False)
    return fig


def figures(result: dict) -> dict[str, go.Figure]:
    out = {"reliability": reliability_figure(result), "threshold": threshold_figure(result),
           "per_class_ap": per_class_figure(result)}
    explanations = explanation_figure(result)
    if explanations is not None:
        out["explanations"] = explanations
    return out


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _table(rows: list[dict], columns) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_num(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(result: dict, path) -> None:
    """One self-contained HTML file: summary tables and every figure, plotly.js embedded once."""
    keys = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100", "d_ece", "la_ece", "oce", "lrp")
    summary = [{"": "plain", **{k: result.get(k) for k in keys}}]
    if result.get("mc"):
        summary.append({"": f"MC-Dropout (T = {result['mc']['samples']}, p = {result['mc']['dropout']:g})",
                        **{k: result["mc"].get(k) for k in keys[7:]}})
    d = result["dataset"]
    parts = [f"<h1>Evaluation of {html.escape(result['model'])}</h1>",
             f"<p>{html.escape(d['name'])}: {d['images']} images; categories: {html.escape(', '.join(d['categories']))}"
             + (f"; not known to the model (left out): {html.escape(', '.join(d['unmatched_categories']))}"
                if d["unmatched_categories"] else "") + "</p>",
             _table(summary, ("", *keys)),
             f"<p>Calibration on detections with confidence &gt; {result['threshold']:g}; AP over every query "
             "slot (COCO, up to 100 per image).</p>"]
    for k, fig in enumerate(figures(result).values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=k == 0))
    if result.get("explanations"):
        rows = [{"method": n, "detections": e["detections"],
                 **{m: f"{_num(e[m]['mean'])} [{_num(e[m]['low'])}, {_num(e[m]['high'])}]" for m in METRICS}}
                for n, e in result["explanations"].items()]
        parts += ["<h2>Explanation quality: mean [95% interval]</h2>", _table(rows, ("method", "detections", *METRICS)),
                  "<h2>Worst-explained detections (lowest energy pointing)</h2>",
                  _table(result["worst_explained"], ("file_name", "query", "label", "score", "method",
                                                     "energy_pointing", "pointing_game"))]
    parts += ["<h2>Worst-calibrated detections (largest |confidence - true positive|)</h2>",
              _table(result["worst_calibrated"],
                     ("file_name", "query", "label", "score", "mc_score", "tp", "iou", "best_iou"))]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
    Path(path).write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation</title>"
                          f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


CSV_COLUMNS = ("image_id", "file_name", "query", "label", "score", "mc_score", "mc_std", "x0", "y0", "x1", "y1",
               "tp", "iou", "best_iou", "truth_id")


def write_csv(result: dict, path) -> None:
    """One row per detection (result["rows"]); explained detections also carry each method's
    metrics as <method>_<metric> columns."""
    methods = list(result.get("explanations") or {})
    extra = [f"{m}_{k}" for m in methods for k in METRICS]
    scores = {}
    for r in result.get("explained", []):
        scores.setdefault((r["image_id"], r["query"]), {}).update({f"{r['method']}_{k}": r[k] for k in METRICS})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*CSV_COLUMNS, *extra], extrasaction="ignore")
        writer.writeheader()
        for row in result["rows"]:
            writer.writerow({**row, **scores.get((row["image_id"], row["query"]), {})})

"""How far cheaper Integrated Gradients settings move the map from the full setting: Spearman rank
correlation of the maps over demo scenes (seeds from 1,000,000: not the training scenes) or on the
R50 architecture.

    .venv/bin/python -m bench.ig_fidelity [--model demo|r50] [--scenes 50] [--size PX]
        [--full steps=32] [--cheap "steps=16;resolution=64;steps=16,resolution=64"] [--threads N]

Per cheaper setting: median and minimum rank correlation with the full setting's map (per pixel of
the coarser grid, the finer map area-pooled onto it; and per cell of a coarse grid, as a person
reads a heatmap), the share of scenes at >= 0.9, the median completeness error (relative delta)
and the time ratio. The explained detection is each scene's most confident one; other parameters
are the declared defaults.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from core.demo.scenes import make_scene
from core.methods.integrated_gradients import DEFAULTS, compute_ig


def _setting(text: str) -> dict:
    return {k: int(v) for k, v in (part.split("=") for part in text.split(",") if part)}


def _pool(a: np.ndarray, shape) -> np.ndarray:
    """Area-average of a map onto a coarser grid (its attributions' sums per cell, up to scale)."""
    return F.adaptive_avg_pool2d(torch.as_tensor(a, dtype=torch.float32)[None, None], shape)[0, 0].numpy()


def rank_correlation(a: np.ndarray, full: np.ndarray, cells: int | None = None) -> float:
    """Spearman correlation of map `a` with `full`, on the coarser of the two grids (the finer one
    area-pooled onto it), or on a `cells` x `cells` grid (both pooled)."""
    shape = (cells, cells) if cells else min(a.shape, full.shape)
    return float(spearmanr(_pool(a, shape).ravel(), _pool(full, shape).ravel())[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--size", type=int, default=None, help="model input short side (r50: default 800)")
    parser.add_argument("--full", default="steps=32")
    parser.add_argument("--cheap", default="steps=16;resolution=64;steps=16,resolution=64")
    parser.add_argument("--cells", type=int, default=16, help="also compare on a cells x cells grid")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "r50":
        from bench.r50 import at_size, r50_random, scene
        loaded = at_size(r50_random("cpu"), args.size or 800)
        image_of = lambda seed: scene(args.size or 800, seed)  # noqa: E731
    else:
        from core.models.loading import load_model
        loaded = load_model(args.model, "cpu")
        image_of = lambda seed: make_scene(seed)[0]  # noqa: E731
    full, cheap = _setting(args.full), [_setting(c) for c in args.cheap.split(";")]
    rows = {i: {"rho": [], "cell": [], "rel": [], "t": []} for i in range(len(cheap))}
    ref_rel, ref_t = [], []
    for seed in range(1_000_000, 1_000_000 + args.scenes):
        pixels = loaded.pixel_values(image_of(seed))
        with torch.inference_mode():
            query = int(loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1].max(-1).values.argmax())
        start = time.perf_counter()
        ref = compute_ig(loaded, pixels, query, {**DEFAULTS, **full})["ig"]
        ref_t.append(time.perf_counter() - start)
        ref_rel.append(ref.info["relative_delta"] or 0.0)
        for i, setting in enumerate(cheap):
            start = time.perf_counter()
            e = compute_ig(loaded, pixels, query, {**DEFAULTS, **full, **setting})["ig"]
            rows[i]["t"].append(time.perf_counter() - start)
            rows[i]["rel"].append(e.info["relative_delta"] or 0.0)
            rows[i]["rho"].append(rank_correlation(e.heatmap, ref.heatmap))
            rows[i]["cell"].append(rank_correlation(e.heatmap, ref.heatmap, args.cells))
    print(f"model {loaded.name}, input {list(pixels.shape[-2:])}, {args.scenes} scenes (seeds from 1,000,000), "
          f"full setting {full} (other parameters: declared defaults; median relative delta "
          f"{np.median(ref_rel):.3f})")
    print(f"rank correlation per pixel (of the coarser grid) and per cell ({args.cells} x {args.cells} grid)")
    print("| setting | per pixel: median | min | share >= 0.9 | per cell: median | min | share >= 0.9 "
          "| median rel. delta | time / full |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, setting in enumerate(cheap):
        r = rows[i]
        cols = "".join(f" {np.median(v):.3f} | {v.min():.3f} | {(v >= 0.9).mean():.0%} |"
                       for v in (np.asarray(r["rho"]), np.asarray(r["cell"])))
        print(f"| {setting} |{cols} {np.median(r['rel']):.3f} | {np.sum(r['t']) / np.sum(ref_t):.2f} |")


if __name__ == "__main__":
    main()

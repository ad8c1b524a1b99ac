"""D-RISE on held-out demo scenes: pointing game, deletion / insertion, cost; and how stable each
method's map is under MC-Dropout.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.drise [--scenes 100] [--seed 1000000] [--masks 1000,4000]
        [--scenes-at 4000=30] [--stability-samples 30] [--model demo]

Per scene, the best-scoring correct detection (score >= 0.7, same label as a true object at
IoU >= 0.5). Printed per D-RISE size N: pointing game (share of maps whose maximum is inside the
detection's box), energy pointing game (share of positive mass inside the box), deletion and
insertion AUC ("matched" score, core/evaluation/faithfulness.py), the convergence rho, and the
cost as a ratio to one no-grad forward of the same image. The plain CAM family and attention are
measured on the same detections as references. Stability: the mean pairwise Spearman
correlation of each method's T MC-Dropout sample maps (trained dropout rate, slot identity),
averaged over the same detections.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def hit(heatmap: np.ndarray, box, width: int, height: int) -> bool:
    rows, cols = heatmap.shape
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x, y = (c + 0.5) * width / cols, (r + 0.5) * height / rows
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--masks", default="1000,4000")
    parser.add_argument("--scenes-at", default="", help="fewer scenes for a size, e.g. 4000=30")
    parser.add_argument("--stability-samples", type=int, default=30, help="T (0: skip the stability part)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--no-references", action="store_true", help="D-RISE only (no CAM / attention maps)")
    parser.add_argument("--report-every", type=int, default=25, help="print the tables every K scenes too")
    args = parser.parse_args()
    from app.cli import _quiet
    _quiet()
    from core.demo.scenes import make_scene
    from core.evaluation.faithfulness import energy_pointing_game, faithfulness
    from core.evaluation.metrics import box_iou
    from core.methods import mc_maps
    from core.methods.registry import METHODS
    from core.models.detection import above, detect
    from core.models.loading import load_model

    loaded = load_model(args.model)
    sizes = [int(n) for n in args.masks.split(",") if n]
    limit = {int(k): int(v) for k, v in (item.split("=") for item in args.scenes_at.split(",") if item)}
    references = [] if args.no_references else [*mc_maps.cam_methods(), "attention"]
    rows: dict[str, list[dict]] = {}
    stab: dict[str, list[float]] = {m: [] for m in references}
    count = 0
    for i, seed in enumerate(range(args.seed, args.seed + args.scenes)):
        image, truth = make_scene(seed)
        pixels = loaded.pixel_values(image)
        H, W = pixels.shape[-2:]
        correct = [d for d in above(detect(loaded, image), 0.7)
                   if any(o["label"] == d["label"] and box_iou([d["box"]], [o["box"]])[0, 0] >= 0.5 for o in truth)]
        if not correct:
            continue
        det = max(correct, key=lambda d: d["score"])
        q, count = det["index"], count + 1
        box_px = np.array(det["box"]) * ([W / image.width, H / image.height] * 2)  # in model-input pixels
        with torch.no_grad():
            start = time.perf_counter()
            loaded.model(pixel_values=pixels)
            one = time.perf_counter() - start

        def measure(name, heatmap, seconds=None, extra=None):
            f = faithfulness(loaded, pixels, q, heatmap)
            rows.setdefault(name, []).append({
                "hit": hit(heatmap, box_px, W, H), "energy": energy_pointing_game(heatmap, box_px, (W, H)),
                "deletion": f["deletion_auc"]["matched"], "insertion": f["insertion_auc"]["matched"],
                "cost": seconds / one if seconds else np.nan, **(extra or {})})

        for n in sizes:
            if i >= limit.get(n, args.scenes):
                continue
            start = time.perf_counter()
            e = METHODS["drise"].compute(loaded, pixels, q, METHODS["drise"].validate({"masks": n}))["drise"]
            measure(f"drise N={n}", e.heatmap, time.perf_counter() - start,
                    {"r": e.info["convergence_r"], "rho": e.info["convergence_rho"]})
        done = {}
        for name in references:
            spec = METHODS[name]
            if spec.family not in done:
                done[spec.family] = spec.compute(loaded, pixels, q, spec.defaults)
            measure(name, done[spec.family][name].heatmap)
            if args.stability_samples:
                r = mc_maps.map_uncertainty(loaded, pixels, q, name, {}, samples=args.stability_samples)
                stab[name].append(r["stability"])
        print(f"scene {i + 1}/{args.scenes}: {count} detections", flush=True)
        if (i + 1) % args.report_every == 0 and i + 1 < args.scenes:
            report(args, loaded, rows, stab, i + 1)

    report(args, loaded, rows, stab, args.scenes)


def report(args, loaded, rows: dict, stab: dict, scenes: int) -> None:
    print(f"\n{scenes} scenes from seed {args.seed}; model {loaded.name}; one correct detection per scene "
          f"(best score >= 0.7); {torch.get_num_threads()} thread(s)")
    print("method: detections | pointing game | energy PG | deletion AUC (lower better) | insertion AUC | "
          "cost x forward | convergence r | convergence rho")
    for name, rs in rows.items():
        mean = {k: float(np.nanmean([r[k] for r in rs])) if np.isfinite([r[k] for r in rs]).any() else np.nan
                for k in rs[0]}
        print(f"{name}: {len(rs)} | {mean['hit']:.3f} | {mean['energy']:.3f} | {mean['deletion']:.3f} | "
              f"{mean['insertion']:.3f} | {mean['cost']:.0f} | {mean.get('r', np.nan):.3f} | "
              f"{mean.get('rho', np.nan):.3f}")
    if args.stability_samples and stab:
        p = float(loaded.model.config.dropout)
        print(f"\nstability under MC-Dropout (T={args.stability_samples}, p={p:g}, slot identity): "
              "mean pairwise Spearman of the sample maps, averaged over detections")
        for name, values in sorted(stab.items(), key=lambda kv: -np.nanmean(kv[1]) if kv[1] else 0):
            print(f"{name}: {np.nanmean(values):.3f} (n={np.sum(np.isfinite(values))})")


if __name__ == "__main__":
    main()

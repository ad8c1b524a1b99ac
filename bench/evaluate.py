"""`evaluate` on demo scenes, measured in one run:

  python -m bench.evaluate [--scenes 500] [--seed 1000000] [--samples 30] [--threads 1]

Prints: the run time of `evaluate` (files written by `python -m app scenes`, fresh cache, no
MC-Dropout, no explanations) as a ratio to as many plain batch-1 forwards of the same images
(goal <= 1.3; the forwards are timed before and after, their mean is the reference); AP50 of
`evaluate` (COCO, faster-coco-eval) against `python -m app evaluate-demo` (the project's own
101-point AP); D-ECE and OCE of the plain scores and, with --samples T, of the MC-Dropout means.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch


def _forwards(loaded, pvs) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for pv in pvs:
            loaded.model(pixel_values=pv)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=30, help="MC-Dropout samples for the MC calibration (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from app.cli import _quiet, main as cli
    _quiet()
    from core.demo.scenes import write_scenes
    from core.evaluation.coco import load_coco
    from core.evaluation.evaluate import evaluate
    from core.models.loading import load_model

    loaded = load_model("demo", "cpu")
    work = Path(tempfile.mkdtemp())
    write_scenes(work / "scenes", args.scenes, args.seed)
    dataset = load_coco(work / "scenes", work / "scenes" / "annotations.json", loaded.id2label)
    pvs = [loaded.pixel_values(dataset.load(e)) for e in dataset.images]
    _forwards(loaded, pvs[:20])  # warm-up
    before = _forwards(loaded, pvs)
    result = evaluate(loaded, dataset, cache_dir=work / "cache")
    seconds = result["seconds"]["total"]
    after = _forwards(loaded, pvs)
    reference = (before + after) / 2
    print(f"evaluate, {args.scenes} scenes: {seconds:.2f} s = {seconds / reference:.2f}x {args.scenes} plain forwards "
          f"({before:.2f} s before, {after:.2f} s after; goal <= 1.3); COCO {result['seconds']['coco']:.2f} s, "
          f"calibration {result['seconds']['calibration']:.2f} s; {torch.get_num_threads()} thread(s)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli(["evaluate-demo", "--scenes", str(args.scenes), "--seed", str(args.seed), "--json"])
    demo = json.loads(out.getvalue())
    print(f"AP50: evaluate {result['ap50']:.4f}, evaluate-demo {demo['map50']:.4f} "
          f"(difference {result['ap50'] - demo['map50']:+.4f}; goal within 0.01); AP .50:.95 {result['ap']:.4f} vs "
          f"{demo['map50_95']:.4f}")
    print(f"plain scores, confidence > {result['threshold']:g} ({result['detections']} detections): "
          f"D-ECE {result['d_ece']:.4f}, LA-ECE {result['la_ece']:.4f}, OCE {result['oce']:.4f}, "
          f"LRP {result['lrp']:.4f}")
    if args.samples:
        start = time.perf_counter()
        mc = evaluate(loaded, dataset, cache_dir=work / "cache", samples=args.samples)["mc"]
        print(f"MC-Dropout means (T = {mc['samples']}, p = {mc['dropout']:g}), confidence > {result['threshold']:g} "
              f"({mc['detections']} detections): D-ECE {mc['d_ece']:.4f}, LA-ECE {mc['la_ece']:.4f}, "
              f"OCE {mc['oce']:.4f}, LRP {mc['lrp']:.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""The real model's cost on the machine this runs on: DETR-ResNet-50's architecture (random weights)
at 800 px, one no-grad forward and each page action, as seconds and as ratios to that forward.

    .venv/bin/python -m bench.cpu_r50 [--size 800] [--items detect,cams,ig,mc,compare] [--threads N]
                                      [--ig-steps N] [--ig-resolution PX] [--samples 30] [--trace]

Per action: time to the first result a person sees (Integrated Gradients: its first early map;
Compare: its first panels, with its first scores and its early ranking in its note; MC-Dropout: the
histograms of its first chunk of samples; the others: their only result), time to the final result,
and the process' peak resident set (VmHWM, reset after loading). Each action runs in a fresh process
(one process' cached allocations cannot hide another's peak) after one warm-up forward; its
ratios use the forward measured in the same process. IG runs at its declared defaults unless
--ig-steps / --ig-resolution say otherwise (printed in the table).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it (app/background.py), before torch loads

import torch  # noqa: E402

from bench.integrated_gradients import _kib, _reset_peak
from bench.r50 import at_size, r50_random, scene
from bench.timing import in_fresh_process

ITEMS = {"detect": "detection", "cams": "Grad-CAM family", "ig": "Integrated Gradients", "mc": "MC-Dropout",
         "compare": "Compare"}


def worker(args) -> dict:
    from core.methods.explanation import Reporter
    from core.methods.integrated_gradients import LEVELS
    from core.methods.registry import METHODS
    loaded = at_size(r50_random("cpu"), args.size)
    image = scene(args.size)
    pixels = loaded.pixel_values(image)
    with torch.inference_mode():
        probs = loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1]  # warm-up forward too
    query = int(probs.max(-1).values.argmax())
    times = []
    for _ in range(2):
        start = time.perf_counter()
        with torch.inference_mode():
            loaded.model(pixel_values=pixels)
        times.append(time.perf_counter() - start)
    forward = statistics.median(times)
    first, note, phase, scored_at = [], "", ["until the first result"], {}

    def mark(results):
        first or first.append(time.perf_counter() - start)
        stage = isinstance(results, dict) and results.get("stage")  # Compare's; other early results have none
        phase[0] = f"after {stage} of {len(results.get('methods', {}))} methods" if stage else "after an early result"
        if stage == "scores":  # Compare's first scores, and its early ranking (every map scored, coarse or full)
            scored = sum("scores" in m for m in results["methods"].values())
            scored_at.setdefault("first", time.perf_counter() - start)
            if scored == len(results["methods"]):
                scored_at.setdefault("all", time.perf_counter() - start)
    ig = {k: v for k, v in (("steps", args.ig_steps), ("resolution", args.ig_resolution)) if v}
    exact = _reset_peak()
    stop_trace = _rss_by_phase(phase) if args.trace else None
    start = time.perf_counter()
    if args.worker == "detect":
        from core.models.detection import detect
        detect(loaded, image)
    elif args.worker == "cams":
        METHODS["gradcam"].compute(loaded, pixels, query, METHODS["gradcam"].defaults)
    elif args.worker == "ig":
        params = {**METHODS["ig"].defaults, **ig}
        info = METHODS["ig"].compute(loaded, pixels, query, params, Reporter(partial=mark))["ig"].info
        note = (f"{params['steps']} steps at {info['shape'][0]} px short side, first map at "
                f"{min(LEVELS[0], params['steps'])} steps; completeness off by {100 * (info['relative_delta'] or 0):.1f}%")
    elif args.worker == "mc":
        from core.models.mc_dropout import mc_dropout
        mc_dropout(loaded, pixels, image.size, samples=args.samples, progress=Reporter(partial=mark))
        note = f"T={args.samples}, histograms redrawn after each chunk of samples"
    elif args.worker == "compare":
        from core.evaluation.compare import compare, default_methods
        from core.evaluation.faithfulness import STEPS
        methods = default_methods(ig)
        compare(loaded, pixels, query, methods, image_size=image.size, progress=Reporter(partial=mark))
        note = ("default methods" + (f", IG {ig}" if ig else "") +
                f"; curves {STEPS} steps; first panel: the joint pass's maps; first scores at "
                f"{scored_at['first']:.1f} s, early ranking ({STEPS // 2} of {STEPS} steps) at {scored_at['all']:.1f} s")
    final = time.perf_counter() - start
    peak = _kib("VmHWM") if exact else None
    if stop_trace:
        note += "; RSS peak by phase (MiB): " + ", ".join(f"{name} {mib}" for name, mib in stop_trace().items())
    return {"forward": forward, "first": first[0] if first else final, "final": final,
            "peak_mib": peak / 1024 if peak else None, "note": note, "shape": list(pixels.shape),
            "threads": torch.get_num_threads()}


def _rss_by_phase(phase: list):
    """Samples this process' RSS every 0.1 s under the phase named in phase[0]; returns stop(), which
    ends the sampling and gives {"phase (from t s)": its peak MiB}."""
    import threading
    peaks, starts, done, t0 = {}, {}, threading.Event(), time.perf_counter()

    def sample():
        while not done.wait(0.1):
            starts.setdefault(phase[0], time.perf_counter() - t0)
            peaks[phase[0]] = max(_kib("VmRSS") // 1024, peaks.get(phase[0], 0))
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return lambda: (done.set(), thread.join(), {f"{p} (from {starts[p]:.0f} s)": mib for p, mib in peaks.items()})[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800, help="input short side in px (4:3 image)")
    parser.add_argument("--items", default=",".join(ITEMS), help=f"comma-separated: {','.join(ITEMS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--ig-steps", type=int, default=None, help="IG steps (default: the declared default)")
    parser.add_argument("--ig-resolution", type=int, default=None, help="IG short side px (default: declared)")
    parser.add_argument("--samples", type=int, default=30, help="MC-Dropout samples")
    parser.add_argument("--trace", action="store_true",
                        help="also sample RSS every 0.1 s and print each phase's peak (between early results)")
    parser.add_argument("--worker", choices=list(ITEMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = {}
    for item in args.items.split(","):
        rows[item] = in_fresh_process("bench.cpu_r50", item)
        print(f"... {item} done", file=sys.stderr, flush=True)
    any_row = next(iter(rows.values()))
    forward = statistics.median(r["forward"] for r in rows.values())
    print(f"DETR-R50 architecture (random weights), input {any_row['shape']}, {any_row['threads']} threads; "
          f"one no-grad forward {forward:.2f} s (median over the actions' processes)")
    print(f"| action | first result s | (x forward) | final result s | (x forward) | peak RSS MiB | setting |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for item, r in rows.items():
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
        print(f"| {ITEMS[item]} | {r['first']:.1f} | {r['first'] / r['forward']:.1f} | {r['final']:.1f} | "
              f"{r['final'] / r['forward']:.1f} | {peak} | {r['note']} |")


if __name__ == "__main__":
    main()

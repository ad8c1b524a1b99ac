"""Peak memory of the big backward passes with and without core/memory.py's measures: DETR-R50's
architecture (random weights) at --size px, each measurement in a fresh process (VmHWM from the pass'
start; the model and one warm-up forward already loaded).

    .venv/bin/python -m bench.memory [--size 800] [--ig-steps 4]

Rows: Grad-CAM family and ODAM with and without giving freed heap back after each backward
(release_free_memory); IG under Compare's saving_memory (allocations from 16 MiB on pages of their
own) with 0 to 3 backbone stages recomputed in its backward, and with 2 on glibc's heap (no pages of
their own), with the time ratio to none. Peaks vary between identical runs by up to a few
hundred MiB (glibc's heap reuse): run it more than once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it, before torch loads

import torch  # noqa: E402

from bench.integrated_gradients import _kib, _reset_peak  # noqa: E402
from bench.r50 import at_size, r50_random, scene  # noqa: E402
from bench.timing import in_fresh_process  # noqa: E402

RUNS = {"gradcam:trim": "Grad-CAM family, freed heap given back", "gradcam:keep": "Grad-CAM family, heap kept",
        "odam:trim": "ODAM, freed heap given back", "odam:keep": "ODAM, heap kept",
        "ig:0": "IG, no stage recomputed", "ig:1": "IG, 1 stage recomputed", "ig:2": "IG, 2 stages recomputed",
        "ig:3": "IG, 3 stages recomputed", "ig:2:heap": "IG, 2 stages recomputed, glibc's heap"}


def worker(args) -> dict:
    from core import memory
    import core.methods.integrated_gradients as igm
    from core.methods.registry import METHODS
    method, how, *heap = args.worker.split(":")
    if heap:  # the threshold where glibc's own settles: large blocks stay on its heap
        memory.MAPPED_FROM = memory.HEAP_BLOCKS_UP_TO
    if how == "keep":
        memory._TRIM = None
    loaded = at_size(r50_random("cpu"), args.size)
    pixels = loaded.pixel_values(scene(args.size))
    with torch.inference_mode():
        query = int(loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1].max(-1).values.argmax())
    params = dict(METHODS[method].defaults)
    saving = nullcontext()
    if method == "ig":
        params["steps"] = args.ig_steps
        igm.RECOMPUTED_STAGES = int(how)
        saving = memory.saving_memory()
    memory.release_free_memory()
    _reset_peak()
    start = time.perf_counter()
    with saving:
        METHODS[method].compute(loaded, pixels, query, params)
    return {"seconds": time.perf_counter() - start, "peak_mib": _kib("VmHWM") / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--ig-steps", type=int, default=4)
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = {}
    for run in RUNS:
        rows[run] = in_fresh_process("bench.memory", run)
        print(f"... {run} done", file=sys.stderr, flush=True)
    print(f"DETR-R50 architecture (random weights), {args.size} px short side, {torch.get_num_threads()} threads; "
          f"IG {args.ig_steps} steps")
    print("| pass | peak RSS MiB | seconds | time / IG with none recomputed |")
    print("|---|---:|---:|---:|")
    for run, r in rows.items():
        ratio = f"{r['seconds'] / rows['ig:0']['seconds']:.2f}" if run.startswith("ig") else ""
        print(f"| {RUNS[run]} | {r['peak_mib']:.0f} | {r['seconds']:.1f} | {ratio} |")


if __name__ == "__main__":
    main()

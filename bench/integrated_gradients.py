"""Integrated Gradients cost against one no-grad forward, and its peak memory, per batching choice.

    .venv/bin/python -m bench.integrated_gradients [--model demo|tiny|PATH|HUB_ID] [--size PX]
        [--steps 50] [--baseline black] [--repeat 1] [--threads N]

Compares, on the same input and detection: the project's chunking (core.methods.integrated_gradients.
chunk_size: images per chunk bounded by pixels), captum's internal_batch_size=None (all steps in
one batch) and =1 (one step at a time).

Each variant runs in its own fresh process, so one variant's freed-but-cached memory cannot hide
another's peak. Peak memory = the process' peak resident set during IG minus its resident set
just before: Linux' VmHWM, reset through /proc/self/clear_refs after loading and a warm-up
forward. RSS sees torch's CPU allocations (tracemalloc does not); on CUDA the GPU peak
(torch.cuda.max_memory_allocated) is reported too. Where clear_refs is unavailable the peak is
ru_maxrss since process start (an upper bound that includes loading).
Default model: the demo when models/demo-detr exists, else the tiny test model.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import time

import torch

from core.methods.integrated_gradients import chunk_size, compute_ig
from core.models.loading import DEMO_DIR, LoadedModel, Preprocess, load_model
from core.demo.scenes import SCENE_SIZE, make_scene
from bench.timing import in_fresh_process

MODES = {"project": "auto", "captum None": None, "captum 1": 1}


def _kib(field: str) -> int | None:
    try:
        return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1))
    except (OSError, AttributeError):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _load(args) -> LoadedModel:
    if args.model == "tiny":
        from tests.tiny import tiny_detr
        loaded = LoadedModel(model=tiny_detr().requires_grad_(False), name="tiny", preprocess=Preprocess(64, 128))
    else:
        loaded = load_model(args.model)
    if args.size:
        pre = loaded.preprocess
        loaded.preprocess = Preprocess(args.size, args.size * 5 // 3, pre.mean, pre.std)
    return loaded


def worker(args) -> dict:
    """One variant in this process: forward time, IG time, peak memory."""
    loaded = _load(args)
    pixels = loaded.pixel_values(make_scene(0, size=max(args.size or 0, SCENE_SIZE))[0])
    with torch.no_grad():
        probs = loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1]
    query = int(probs.max(-1).values.argmax())  # the most confident detection

    def forward():
        with torch.no_grad():
            loaded.model(pixel_values=pixels)

    times = []
    for _ in range(3):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    params = {"steps": args.steps, "baseline": args.baseline, "internal_batch_size": MODES[args.worker]}
    import captum.attr  # noqa: F401  (imported lazily by compute_ig: keep the import out of the timing;
    # no IG warm-up run, whose freed memory the allocator would keep and so hide part of the peak)
    rss_before, exact = _kib("VmRSS"), _reset_peak()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        info = compute_ig(loaded, pixels, query, params)["ig"].info
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak = _kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"forward_s": statistics.median(times), "ig_s": statistics.median(seconds), "peak_mib": (peak - (rss_before or 0)) / 1024,
            "exact_peak": exact, "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else None, "relative_delta": info["relative_delta"], "delta": info["delta"],
            "shape": list(pixels.shape), "query": query, "device": str(loaded.device), "name": loaded.name,
            "chunk": chunk_size(pixels.shape, args.steps) if MODES[args.worker] == "auto" else MODES[args.worker]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo" if DEMO_DIR.is_dir() else "tiny")
    parser.add_argument("--size", type=int, default=None, help="input short side in px (default: the model's)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--baseline", default="black")
    parser.add_argument("--repeat", type=int, default=1, help="IG runs per variant (median time)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    rows = {}
    for mode in MODES:
        rows[mode] = in_fresh_process("bench.integrated_gradients", mode)
    first = rows["project"]
    forward = statistics.median(r["forward_s"] for r in rows.values())  # one figure for all rows
    print(f"model {first['name']} on {first['device']}, input {first['shape']}, query {first['query']}, "
          f"{args.steps} steps, baseline {args.baseline}, {args.threads or torch.get_num_threads()} threads; "
          f"median of {args.repeat}; one no-grad forward {forward * 1000:.1f} ms")
    if not first["exact_peak"]:
        print("(peak memory from ru_maxrss: includes loading, an upper bound)")
    print(f"{'batching':<12} {'chunk':>6} {'IG s':>8} {'IG/forward':>11} {'peak MiB':>9} "
          f"{'GPU MiB':>8} {'rel. delta':>11}")
    for mode, r in rows.items():
        gpu = f"{r['gpu_peak_mib']:.0f}" if r["gpu_peak_mib"] is not None else "-"
        rel = f"{r['relative_delta']:.4f}" if r["relative_delta"] is not None else "-"
        print(f"{mode:<12} {str(r['chunk']):>6} {r['ig_s']:>8.2f} {r['ig_s'] / forward:>11.1f} "
              f"{r['peak_mib']:>9.0f} {gpu:>8} {rel:>11}")


if __name__ == "__main__":
    main()

"""MC-Dropout cost against one no-grad forward: fast path (backbone once, batched transformer) vs naive.

    .venv/bin/python -m bench.mc_dropout [--model demo|r50|PATH|HUB_ID] [--size 800] [--samples 10,30,100]
                                         [--chunk N] [--p 0.1] [--threads N] [--device cpu|cuda] [--no-naive]

Prints, per T: "MC-Dropout T=100 fast = 7.9x one forward (backbone + passes 6.1x); naive = 95x;
speed-up 12x" (the rest of the fast time is the statistics: matching, spreads) and each
path's peak memory above the starting point (CUDA: allocator peak; CPU: process RSS, sampled).
Goal at T=100: fast <= 12x one forward and >= 8x faster than naive. Both timings include the
statistics (Hungarian matching etc.); the fast one includes its backbone pass.
Default model: the bundled demo if models/demo-detr exists, else "r50": DETR-R50's real
architecture with random weights (the honest cost at 800x1066).
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import torch

from core.models.mc_dropout import backbone_features, default_chunk, mc_dropout, mc_dropout_naive, sample_from_features
from bench.r50 import r50_random, scene
from core.models.loading import DEMO_DIR, Preprocess, default_device, load_model


class Peak:
    """Peak memory of a block above its start: CUDA allocator peak, else sampled process RSS."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = self._rss()
            self.done = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.start
        else:
            self.done.set()
            self.thread.join()
            self.bytes = max(self.peak, self._rss()) - self.start


def timed(fn, device: torch.device, repeat: int = 1) -> tuple[float, int]:
    """(best seconds of `repeat` runs, peak bytes of the first)."""
    times, peak = [], 0
    for i in range(repeat):
        with Peak(device) as mem:
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = peak or mem.bytes
    return min(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo" if DEMO_DIR.is_dir() else "r50")
    parser.add_argument("--size", type=int, default=800, help="input short side in pixels (4:3 image)")
    parser.add_argument("--samples", default="10,30,100")
    parser.add_argument("--chunk", type=int, default=None, help="passes per batch (default: default_chunk)")
    parser.add_argument("--p", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive path (it is slow)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    name = args.device or default_device()
    loaded = r50_random(name) if args.model == "r50" else load_model(args.model, name)
    device = loaded.device
    loaded.preprocess = Preprocess(shortest_edge=args.size, longest_edge=args.size * 5 // 3,
                                   mean=loaded.preprocess.mean, std=loaded.preprocess.std)
    image = scene(args.size)
    pixels = loaded.pixel_values(image)
    print(f"model {loaded.name} on {device}, input {list(pixels.shape)}, p={args.p}, "
          f"chunk={args.chunk or default_chunk(device)}, "
          f"{torch.get_num_threads()} threads")

    def forward():
        with torch.no_grad():
            loaded.model(pixel_values=pixels)

    forward()  # warm-up: first-call allocations, kernel selection
    mc_dropout(loaded, pixels, image.size, samples=10, p=args.p, chunk=args.chunk)
    one, one_mem = timed(forward, device, repeat=3)
    backbone, _ = timed(lambda: backbone_features(loaded, pixels), device, repeat=3)
    print(f"one forward (no grad): {one * 1e3:.1f} ms, peak {one_mem / 2**20:.0f} MiB; "
          f"backbone + projection = {backbone / one:.0%} of it")
    for t in [int(s) for s in args.samples.split(",")]:
        fast, fast_mem = timed(lambda: mc_dropout(loaded, pixels, image.size, samples=t, p=args.p,
                                                  chunk=args.chunk), device)
        passes, _ = timed(lambda: sample_from_features(loaded, backbone_features(loaded, pixels), samples=t, p=args.p,
                                                       chunk=args.chunk), device)
        line = f"MC-Dropout T={t} fast = {fast / one:.1f}x one forward (backbone + passes {passes / one:.1f}x)"
        mem = f"peak memory fast {fast_mem / 2**20:.0f} MiB"
        if not args.no_naive:
            naive, naive_mem = timed(lambda: mc_dropout_naive(loaded, pixels, image.size, samples=t, p=args.p),
                                     device)
            line += f"; naive = {naive / one:.1f}x; speed-up {naive / fast:.1f}x"
            mem += f", naive {naive_mem / 2**20:.0f} MiB"
        print(f"{line}   ({fast:.2f} s; {mem})", flush=True)
    print("goal at T=100: fast <= 12x one forward and >= 8x faster than naive")


if __name__ == "__main__":
    main()

"""Cost of explanation maps under MC-Dropout against one no-grad forward.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.mc_maps [--model r50|demo|PATH] [--size 800] [--samples 30]
        [--methods gradcam,attention] [--layer NAME] [--chunk N] [--p 0.1] [--naive 2] [--device cpu|cuda]

Prints per method: "T=30 maps = 4.8x one forward (12.3 s, peak 3.1 GiB)" and, with --naive K, the
naive path (K samples one at a time, each a full forward + backward; its T-sample cost
extrapolated as T / K times the measured one, since every sample costs the same).
--flops also counts FLOPs (a ratio the machine's load cannot change).
Goal: T = 30 CAM maps <= 6x one forward on DETR-R50's architecture at 800 px, one CPU thread.
Default model "r50": DETR-R50's real architecture with random weights (bench/mc_dropout.py).
"""
from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from bench.mc_dropout import Peak, r50_random
from core.demo.scenes import make_scene
from core.methods import mc_maps
from core.models.loading import Preprocess, default_device, load_model


def flops(fn) -> float:
    """FLOPs of fn (torch's FlopCounterMode; fused attention runs as its math form so it is counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="r50")
    parser.add_argument("--size", type=int, default=800, help="input short side in pixels (4:3 image)")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--methods", default="gradcam,attention")
    parser.add_argument("--layer", default=None, help="CAM layer (default: the method's default)")
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--p", type=float, default=0.1)
    parser.add_argument("--naive", type=int, default=0, help="time K naive samples (0: skip)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--flops", action="store_true", help="also count FLOPs (load-independent ratio)")
    args = parser.parse_args()
    from app.cli import _quiet
    _quiet()

    name = args.device or default_device()
    loaded = r50_random(name) if args.model == "r50" else load_model(args.model, name)
    device = loaded.device
    loaded.preprocess = Preprocess(shortest_edge=args.size, longest_edge=args.size * 5 // 3,
                                   mean=loaded.preprocess.mean, std=loaded.preprocess.std)
    image = make_scene(0)[0].resize((args.size * 4 // 3, args.size), Image.BILINEAR)
    pixels = loaded.pixel_values(image)
    print(f"model {loaded.name} on {device}, input {list(pixels.shape)}, T={args.samples}, p={args.p}, "
          f"{torch.get_num_threads()} threads")

    def timed(fn, repeat=1):
        best, peak = float("inf"), 0
        for _ in range(repeat):
            with Peak(device) as mem:
                start = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            peak = max(peak, mem.bytes)
        return best, peak

    def forward():
        with torch.no_grad():
            loaded.model(pixel_values=pixels)

    forward()
    one, _ = timed(forward, repeat=3)
    print(f"one forward (no grad): {one * 1e3:.0f} ms")
    params = {"layer": args.layer} if args.layer else {}
    for method in args.methods.split(","):
        mc_maps.map_uncertainty(loaded, pixels, 0, method, params, samples=2, p=args.p)  # warm-up, private copies
        seconds, peak = timed(lambda: mc_maps.map_uncertainty(loaded, pixels, 0, method, params, samples=args.samples,
                                                               p=args.p, chunk=args.chunk))
        line = (f"{method}: T={args.samples} maps = {seconds / one:.1f}x one forward "
                f"({seconds:.1f} s, peak {peak / 2**30:.1f} GiB)")
        if args.naive and method != "attention":
            naive, _ = timed(lambda: mc_maps.cam_maps_naive(loaded, pixels, 0, method, params, samples=args.naive,
                                                            p=args.p))
            line += (f"; naive {args.naive} samples {naive / one:.1f}x -> T={args.samples} "
                     f"~{naive / one * args.samples / args.naive:.0f}x (extrapolated)")
        if args.flops:
            ratio = flops(lambda: mc_maps.map_uncertainty(loaded, pixels, 0, method, params, samples=args.samples,
                                                          p=args.p, chunk=args.chunk)) / flops(forward)
            line += f"; FLOPs {ratio:.1f}x one forward"
        print(line, flush=True)
    print("goal: T=30 CAM maps <= 6x one forward (R50 architecture, 800 px, one CPU thread)")


if __name__ == "__main__":
    main()

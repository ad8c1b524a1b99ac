"""Grad-CAM + Grad-CAM++ cost against one no-grad forward, on one image.

    .venv/bin/python -m bench.gradcam [--model demo|PATH|HUB_ID] [--size 800] [--repeat 5]

Prints: both maps from one forward + one backward (goal <= 3.3x one forward); switching the
variant afterwards (a cache hit, no model call); the naive way (a forward + backward per map).
Without models/demo-detr (and no --model) it runs an untrained model of the demo's shape.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from core import cache
from core.methods.gradcam import compute_cams, default_layer
from core.images import image_id
from core.models.loading import DEMO_DIR, LoadedModel, Preprocess, load_model
from core.demo.scenes import make_scene
from bench.timing import median_seconds as timed


def untrained_demo() -> LoadedModel:
    from transformers import DetrForObjectDetection

    from core.demo.train import _detr_init, demo_config
    config = demo_config()
    config._attn_implementation = "eager"
    model = DetrForObjectDetection(config)
    _detr_init(model)
    model.eval().requires_grad_(False)
    return LoadedModel(model=model, name="untrained-demo", preprocess=Preprocess())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo" if DEMO_DIR.is_dir() else None)
    parser.add_argument("--size", type=int, default=800, help="input short side in pixels")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache.configure(directory=tempfile.mkdtemp(prefix="bench-gradcam-"))

    loaded = load_model(args.model) if args.model else untrained_demo()
    loaded.preprocess = Preprocess(shortest_edge=args.size, longest_edge=args.size * 5 // 3,
                                   mean=loaded.preprocess.mean, std=loaded.preprocess.std)
    image, _ = make_scene(0)
    pixels = loaded.pixel_values(image)
    with torch.no_grad():
        probs = loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1]
    query = int(probs.max(-1).values.argmax())  # the most confident detection
    params = {"layer": None, "target": "class"}
    print(f"model {loaded.name} on {loaded.device}, input {list(pixels.shape)}, query {query}, "
          f"layer {default_layer(loaded.model)}, {torch.get_num_threads()} threads, median of {args.repeat}")

    def forward():
        with torch.no_grad():
            loaded.model(pixel_values=pixels)

    one = timed(forward, args.repeat)
    both = timed(lambda: compute_cams(loaded, pixels, query, params), args.repeat)
    naive = timed(lambda: [compute_cams(loaded, pixels, query, params)[m] for m in ("gradcam", "gradcam++")],
                  args.repeat)

    k = cache.key(loaded.name, image_id(image), list(pixels.shape), query, "cam", params)
    cache.memo(k, lambda: compute_cams(loaded, pixels, query, params))["gradcam"]  # first view computes
    calls = []
    handle = loaded.model.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        switch = timed(lambda: cache.memo(k, lambda: compute_cams(loaded, pixels, query, params))["gradcam++"],
                       args.repeat)
    finally:
        handle.remove()

    print(f"one forward (no grad):              {one * 1e3:9.1f} ms")
    print(f"Grad-CAM + Grad-CAM++ = {both / one:.2f}x one forward ({both * 1e3:.1f} ms; goal <= 3.3x)")
    print(f"switch variant (cache hit, {len(calls)} model calls) = {switch / one:.4f}x one forward "
          f"({switch * 1e3:.2f} ms)")
    print(f"naive (forward + backward per map) = {naive / one:.2f}x one forward ({naive * 1e3:.1f} ms); "
          f"shared pass is {naive / both:.2f}x faster")


if __name__ == "__main__":
    main()

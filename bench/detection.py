"""Detection overhead and threshold latency, measured in one run on the same image.

  python -m bench.detection [--model demo|PATH|HUB_ID] [--size 800] [--input 0] [--repeat 10] [--no-methods]

Prints: end-to-end detection (decode + pre-process + forward + post-process) / one raw
`model(pixel_values)` forward (goal <= 1.15), the cost of every explanation that applies to the
model (core.methods.registry.applicable; default parameters; MC-Dropout at 30 samples) as a ratio
to one raw forward, in one table, and the server-side time from a threshold change to the
updated figure (goal < 100 ms, no model call). Any DETR family: DETR, Conditional DETR, DAB-DETR,
Deformable DETR, RT-DETR, D-FINE (`--model DIR` of a save_pretrained directory).
"""
from __future__ import annotations

import argparse
import io
import tempfile

import numpy as np
import torch
from bench.timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=0, help="short side of the test image (0: the model's own)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-methods", action="store_true", help="skip the explanation-cost table")
    parser.add_argument("--input", type=int, default=0, help="model input's short side (a fixed-size model: its "
                        "square side) instead of the model's own (0), to keep CPU runs short")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from app.cli import _quiet
    _quiet()
    from core import cache, service
    cache.configure(directory=tempfile.mkdtemp())
    from core.models.detection import detect
    from core.images import decode_image
    from core.models.loading import load_model_or_demo
    from core.demo.scenes import make_scene

    loaded = load_model_or_demo(args.model)
    if args.input:
        from dataclasses import replace
        pre = loaded.preprocess
        loaded.preprocess = replace(pre, shortest_edge=args.input, longest_edge=args.input * 5 // 3,
                                    fixed_size=(args.input, args.input) if pre.fixed_size else None)
    service.use_model(loaded)
    side = args.size or loaded.preprocess.shortest_edge
    image = make_scene(1_000_001)[0].resize((side * 4 // 3, side))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    data = buf.getvalue()
    pixels = loaded.pixel_values(image)

    def raw():
        with torch.inference_mode():
            loaded.model(pixel_values=pixels)

    def end_to_end():
        detect(loaded, decode_image(data))

    t_raw = median_seconds(raw, args.repeat)
    t_e2e = median_seconds(end_to_end, args.repeat)
    print(f"model {loaded.name} ({loaded.family.name}), image {image.width}x{image.height}, "
          f"input {tuple(pixels.shape[-2:])}, {torch.get_num_threads()} threads")
    print(f"detection end-to-end {1000 * t_e2e:.1f} ms / raw forward {1000 * t_raw:.1f} ms = "
          f"{t_e2e / t_raw:.3f}x (goal <= 1.15)")
    if not args.no_methods:
        method_costs(loaded, pixels, image.size, t_raw, max(1, args.repeat // 5))

    # threshold change -> figure: the web-process callbacks, with the model made unreachable
    from callbacks import detection as cb
    key = service.put_image(image)
    store = {"image_id": key, "width": image.width, "height": image.height, "name": "bench", "truth": None}
    result = {"image_id": key, "detections": detect(loaded, image)}
    calls = service.model_calls()
    service.use_model(None)
    service.model, real_model = (lambda: (_ for _ in ()).throw(AssertionError("model called"))), service.model
    from contextvars import copy_context
    from dash._callback_context import context_value
    from dash._utils import AttributeDict
    thresholds = iter(np.linspace(0.05, 0.95, 1000))

    def threshold_change():
        threshold = float(next(thresholds))

        def run():
            context_value.set(AttributeDict(triggered_inputs=[{"prop_id": "threshold.value", "value": threshold}]))
            cb.filter_detections(result, threshold, None, None, None)
            cb.draw_detections(result, threshold, None, False, store)
        copy_context().run(run)

    cb.draw_detections(result, 0.5, None, False, store)  # the display image is cached once per image
    t_thr = median_seconds(threshold_change, min(args.repeat * 5, 200))
    service.model = real_model
    print(f"threshold change -> updated figure {1000 * t_thr:.1f} ms server side (goal < 100 ms), "
          f"model calls during it: {service.model_calls() - calls}")
    cache.configure()


def method_costs(loaded, pixels, size, t_raw: float, repeat: int) -> None:
    """One row per applicable computation (Grad-CAM and Grad-CAM++ share one): time / one raw forward."""
    from core.methods.registry import METHODS, applicable, context
    from core.models.mc_dropout import mc_dropout
    with torch.inference_mode():
        logits = loaded.model(pixel_values=pixels).logits[0]
    scores = logits.float().softmax(-1)[:, :-1] if loaded.family.no_object else logits.float().sigmoid()
    query = int(scores.max(-1).values.argmax())  # the most confident detection
    rows, done, ctx = [], set(), context(loaded)
    for name, why in applicable(loaded).items():
        if why is not None:
            rows.append((name, None, why))
            continue
        if name == "mc_dropout":
            t = median_seconds(lambda: mc_dropout(loaded, pixels, size, samples=30), repeat)
            rows.append(("mc_dropout (30 samples)", t, ""))
            continue
        method = METHODS[name]
        if method.family in done:
            continue
        done.add(method.family)
        params = method.validate({}, ctx)
        t = median_seconds(lambda: method.compute(loaded, pixels, query, params), repeat)
        names = "/".join(n for n, m in METHODS.items() if m.family == method.family)
        rows.append((names, t, ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)))
    print(f"{'explanation':<28} {'ms':>9} {'x forward':>10}  parameters / why not")
    for label, t, note in rows:
        cost = f"{1000 * t:9.1f} {t / t_raw:10.1f}" if t is not None else f"{'-':>9} {'n/a':>10}"
        print(f"{label:<28} {cost}  {note}")


if __name__ == "__main__":
    main()

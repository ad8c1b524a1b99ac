"""Faster passes on the CPU and what they change: channels_last weights, bfloat16 autocast and
dynamic int8 quantisation of the linear layers, each against float32 in one run.

    .venv/bin/python -m bench.cpu_precision [--model r50|demo] [--size 800] [--scenes 3] [--threads N]

Per variant: the time of one no-grad forward and of one Grad-CAM-family pass (forward + backward),
as ratios to float32 with contiguous weights (bench.timing's median of --reps runs, the variants
one after another on each image, so load from other processes hits them alike), and how far its results are from float32's:
the largest change of a class probability over the confident queries, of a box coordinate
(normalised), the rank correlation of the default Grad-CAM map and of a short Integrated Gradients
map, and the change of deletion / insertion AUC of one map (faithfulness curves run their forwards in
the variant). int8 has no backward, so only its no-grad rows are filled. The servers' OpenMP
setting is used (app/background.py).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from bench.r50 import at_size, r50_random, scene  # noqa: E402
from bench.timing import median_seconds  # noqa: E402

VARIANTS = ("float32", "channels_last", "bfloat16", "int8")


def _variant(loaded, name: str):
    """(loaded model, context for its passes) of one variant."""
    model = copy.deepcopy(loaded.model).to(
        memory_format=torch.contiguous_format if name == "float32" else torch.channels_last)
    if name == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if name == "bfloat16" else contextlib.nullcontext
    return dataclasses.replace(loaded, model=model), ctx


def _outputs(loaded, ctx, pixels, query):
    from core.methods.gradcam import DEFAULT_VARIANT
    from core.methods.registry import METHODS
    with torch.inference_mode(), ctx():
        out = loaded.model(pixel_values=pixels)
    res = {"probs": out.logits[0].float().softmax(-1)[:, :-1], "boxes": out.pred_boxes[0].float()}
    grads = True
    try:
        with ctx():
            res["cam"] = np.asarray(METHODS["gradcam"].compute(loaded, pixels, query, METHODS["gradcam"].defaults)
                                    [DEFAULT_VARIANT].heatmap, float)
            res["ig"] = np.asarray(METHODS["ig"].compute(loaded, pixels, query, {**METHODS["ig"].defaults, "steps": 8})
                                   ["ig"].heatmap, float)
    except (RuntimeError, NotImplementedError):  # int8 linear layers have no backward
        grads = False
    return res, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("r50", "demo"), default="r50")
    parser.add_argument("--size", type=int, default=800, help="R50 input short side in px")
    parser.add_argument("--scenes", type=int, default=3, help="demo scenes (seeds from 1,000,000) or R50 images")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from core.demo.scenes import make_scene
    from core.evaluation.faithfulness import faithfulness
    from core.methods.registry import METHODS
    if args.model == "r50":
        base = at_size(r50_random(), args.size)
        images = [scene(args.size, seed) for seed in range(args.scenes)]
    else:
        from core.models.loading import load_model
        base = load_model("demo", "cpu")
        images = [make_scene(1_000_000 + k)[0] for k in range(args.scenes)]
    variants = {name: _variant(base, name) for name in VARIANTS}
    dev = {name: {"prob": [], "box": [], "cam": [], "ig": [], "del": [], "ins": []} for name in VARIANTS}
    fwd = {name: [] for name in VARIANTS}
    bwd = {name: [] for name in VARIANTS}
    for image in images:
        pixels = base.pixel_values(image).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            probs = base.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1]
        query = int(probs.max(-1).values.argmax())
        confident = probs.max(-1).values.topk(min(10, probs.shape[0])).indices
        ref, _ = _outputs(*variants["float32"], pixels, query)
        ref_faith = faithfulness(base, pixels, query, ref["cam"])
        for name, (loaded, ctx) in variants.items():
            def forward():
                with torch.inference_mode(), ctx():
                    loaded.model(pixel_values=pixels)
            fwd[name].append(median_seconds(forward, args.reps))
            res, grads = _outputs(loaded, ctx, pixels, query)
            d = dev[name]
            d["prob"].append(float((res["probs"][confident] - ref["probs"][confident]).abs().max()))
            d["box"].append(float((res["boxes"][confident] - ref["boxes"][confident]).abs().max()))
            with ctx():
                faith = faithfulness(loaded, pixels, query, ref["cam"])
            d["del"].append(abs(faith["deletion_auc"]["matched"] - ref_faith["deletion_auc"]["matched"]))
            d["ins"].append(abs(faith["insertion_auc"]["matched"] - ref_faith["insertion_auc"]["matched"]))
            if grads:
                d["cam"].append(spearmanr(res["cam"].ravel(), ref["cam"].ravel())[0])
                d["ig"].append(spearmanr(res["ig"].ravel(), ref["ig"].ravel())[0])

                def backward():
                    with ctx():
                        METHODS["gradcam"].compute(loaded, pixels, query, METHODS["gradcam"].defaults)
                bwd[name].append(median_seconds(backward, max(1, args.reps - 1)))
    shape = list(base.pixel_values(images[0]).shape)
    print(f"{args.model} model, input {shape}, {torch.get_num_threads()} threads, {len(images)} images; "
          f"float32 forward {np.median(fwd['float32']):.3f} s, Grad-CAM pass {np.median(bwd['float32']):.3f} s")
    print("| variant | forward (x float32) | Grad-CAM pass (x float32) | max abs change of a class probability | "
          "of a box coordinate | Grad-CAM map rho (min) | IG map rho (min) | deletion / insertion AUC change (max) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in VARIANTS:
        d = dev[name]
        speed = np.median(np.array(fwd[name]) / np.array(fwd["float32"]))
        grad = f"{np.median(np.array(bwd[name]) / np.array(bwd['float32'])):.2f}" if bwd[name] else "no backward"
        cam = f"{min(d['cam']):.4f}" if d["cam"] else "-"
        ig = f"{min(d['ig']):.4f}" if d["ig"] else "-"
        print(f"| {name} | {speed:.2f} | {grad} | {max(d['prob']):.4f} | {max(d['box']):.4f} | {cam} | {ig} | "
              f"{max(d['del']):.4f} / {max(d['ins']):.4f} |")


if __name__ == "__main__":
    main()

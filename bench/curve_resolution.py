"""What capping the faithfulness curves' resolution (core.evaluation.faithfulness.RESOLUTION) changes:
the scores of one map at the cap against the model's full input, and the time ratio. On DETR-R50's
architecture (random weights, --size px), or on a trained model directory with its own scenes
(e.g. the v2 demo stage: --model models/demo-detr-v2-stage1 --scene-version 2 --cap 154).

    .venv/bin/python -m bench.curve_resolution [--model r50|DIR] [--size 800] [--images 3] [--cap 480]
        [--scene-version N]

The map is the default Grad-CAM variant's of each image's most confident query. (On the bundled
demo model, whose input is 128 px, a cap above that changes nothing.)
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.r50 import at_size, r50_random, scene  # noqa: E402

from core.demo.scenes import SCENE_VERSION  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="r50", help="r50 (random weights) or a model directory")
    parser.add_argument("--scene-version", type=int, default=SCENE_VERSION, help="demo scenes for a model directory")
    parser.add_argument("--size", type=int, default=800, help="R50 input short side in px")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--cap", type=int, default=480)
    args = parser.parse_args()
    import core.evaluation.faithfulness as fm
    from core.methods.gradcam import DEFAULT_VARIANT
    from core.methods.registry import METHODS
    if args.model == "r50":
        loaded = at_size(r50_random(), args.size)
        images = [scene(args.size, seed) for seed in range(args.images)]
    else:
        from core.demo.scenes import make_scene
        from core.models.loading import load_model
        loaded = load_model(args.model, "cpu")
        images = [make_scene(1_000_000 + k, version=args.scene_version)[0] for k in range(args.images)]
    rows = []
    for seed, image in enumerate(images):
        pixels = loaded.pixel_values(image)
        with torch.inference_mode():
            query = int(loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1].max(-1).values.argmax())
        cam = METHODS["gradcam"].compute(loaded, pixels, query, METHODS["gradcam"].defaults)[DEFAULT_VARIANT].heatmap
        out = {}
        for cap in (args.cap, 100_000):
            fm.RESOLUTION = cap
            start = time.perf_counter()
            out[cap] = (fm.faithfulness(loaded, pixels, query, cam), time.perf_counter() - start)
        (capped, t_cap), (full, t_full) = out[args.cap], out[100_000]
        rows.append([abs(capped[f"{m}_auc"]["matched"] - full[f"{m}_auc"]["matched"]) for m in ("deletion", "insertion")]
                    + [abs(capped["pointing_game"] - full["pointing_game"]), t_cap / t_full])
        print(f"image {seed}: deletion {full['deletion_auc']['matched']:.3f} -> {capped['deletion_auc']['matched']:.3f}, "
              f"insertion {full['insertion_auc']['matched']:.3f} -> {capped['insertion_auc']['matched']:.3f}, "
              f"pointing game {full['pointing_game']:.3f} -> {capped['pointing_game']:.3f}, "
              f"{t_full:.1f} s -> {t_cap:.1f} s", flush=True)
    r = np.array(rows)
    print(f"{loaded.name}, input {list(pixels.shape[-2:])}, curves capped at {args.cap} px, {len(images)} images: "
          f"|change| of deletion AUC median {np.median(r[:, 0]):.3f} max {r[:, 0].max():.3f}, insertion AUC median "
          f"{np.median(r[:, 1]):.3f} max {r[:, 1].max():.3f}, pointing game max {r[:, 2].max():.3f}; "
          f"time {np.median(r[:, 3]):.2f}x of full resolution")


if __name__ == "__main__":
    main()

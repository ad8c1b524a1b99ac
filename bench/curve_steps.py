"""What fewer deletion / insertion steps (core.evaluation.faithfulness.STEPS) change in a comparison:
every Compare method's AUCs at --steps against a finer --reference, and whether the ranking the page
shows stays the same; on the demo scenes of a model directory (default: the bundled demo).

    .venv/bin/python -m bench.curve_steps [--model DIR] [--scene-version N] [--scenes 12] [--steps 10 20]
        [--reference 40]

Each scene's detection is its most confident query; the maps are Compare's defaults (every method).
The time of the curves is proportional to the steps (2 * (steps - 1) forwards a map), so the ratio
printed is measured, not assumed.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.demo.scenes import SCENE_VERSION  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/demo-detr")
    parser.add_argument("--scene-version", type=int, default=SCENE_VERSION)
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--reference", type=int, default=40)
    args = parser.parse_args()
    from core.demo.scenes import make_scene
    from core.evaluation.compare import default_methods, explain_all, rank, score_all
    from core.evaluation.sanity import spearman
    from core.models.loading import load_model

    loaded = load_model(args.model, "cpu")
    found = {s: {"deletion": [], "insertion": [], "spearman": [], "top": [], "seconds": []} for s in args.steps}
    for k in range(args.scenes):
        image, truth = make_scene(1_000_000 + k, version=args.scene_version)
        pixels = loaded.pixel_values(image)
        with torch.inference_mode():
            query = int(loaded.model(pixel_values=pixels).logits[0].softmax(-1)[:, :-1].max(-1).values.argmax())
        explanations, _ = explain_all(loaded, pixels, query, default_methods())
        maps = {n: e.heatmap for n, e in explanations.items()}

        def scored(steps):
            start = time.perf_counter()
            scores, _ = score_all(loaded, pixels, query, maps, steps=steps)
            return scores, time.perf_counter() - start
        ref, t_ref = scored(args.reference)
        ref_rank = {r["method"]: r["mean_rank"] for r in rank(ref)}
        for steps in args.steps:
            got, t = scored(steps)
            got_rank = {r["method"]: r["mean_rank"] for r in rank(got)}
            for mode in ("deletion", "insertion"):
                found[steps][mode] += [abs(got[n][f"{mode}_auc"] - ref[n][f"{mode}_auc"]) for n in maps]
            found[steps]["spearman"].append(spearman(np.array([got_rank[n] for n in maps]),
                                                     np.array([ref_rank[n] for n in maps])))
            found[steps]["top"].append(min(got_rank, key=got_rank.get) == min(ref_rank, key=ref_rank.get))
            found[steps]["seconds"].append(t / t_ref)
        print(f"scene {k} done", flush=True)
    print(f"{loaded.name}, input {list(pixels.shape[-2:])}, {args.scenes} scenes x {len(maps)} maps, "
          f"against {args.reference} steps:")
    for steps, f in found.items():
        print(f"  {steps:3d} steps: |change| of deletion AUC median {np.median(f['deletion']):.3f} max "
              f"{max(f['deletion']):.3f}, insertion AUC median {np.median(f['insertion']):.3f} max "
              f"{max(f['insertion']):.3f}; ranking Spearman median {np.median(f['spearman']):.3f} min "
              f"{min(f['spearman']):.3f}; same best method {sum(f['top'])}/{len(f['top'])}; "
              f"time {np.median(f['seconds']):.2f}x")


if __name__ == "__main__":
    main()

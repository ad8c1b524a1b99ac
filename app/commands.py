"""Batch subcommands beyond `serve` and `detect`: demo data and model, explanations, uncertainty."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXIT_OK = 0


def cmd_scenes(args) -> int:
    from core.demo.scenes import write_scenes
    write_scenes(Path(args.out), args.count, args.seed, args.size)
    print(f"wrote {args.count} scenes and truth.json to {args.out}")
    return EXIT_OK


def cmd_train_demo(args) -> int:
    import torch
    from core.demo.train import train
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(Path(args.out), steps=args.steps, batch=args.batch, lr=args.lr, eval_every=args.eval_every,
                   device=args.device, resume=Path(args.resume) if args.resume else None,
                   first_seed=args.first_seed, log=lambda line: print(line, flush=True))
    print(json.dumps(result))
    return EXIT_OK


def cmd_evaluate_demo(args) -> int:
    import torch
    from app.cli import _load
    from core.models.detection import detect
    from core.evaluation.metrics import COCO_IOUS, average_precision, mean_average_precision
    from core.demo.scenes import CLASSES, make_scene
    loaded = _load(args)
    preds, truths, seconds = [], [], 0.0
    for s in range(args.seed, args.seed + args.scenes):
        image, truth = make_scene(s)
        start = time.perf_counter()
        preds.append(detect(loaded, image))
        seconds += time.perf_counter() - start
        truths.append(truth)
    report = {
        "model": loaded.name, "scenes": args.scenes, "seed": args.seed,
        "map50": round(mean_average_precision(preds, truths, CLASSES, (0.5,)), 4),
        "map50_95": round(mean_average_precision(preds, truths, CLASSES, COCO_IOUS), 4),
        "ap50_per_class": {c: round(average_precision(preds, truths, c, 0.5), 4) for c in CLASSES},
        "ms_per_image": round(1000 * seconds / args.scenes, 2), "threads": torch.get_num_threads(),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return EXIT_OK


def _image_and_query(args):
    """(model, path, image) for a one-image, one-detection command, or the exit code to return."""
    from app.cli import EXIT_IMAGE, EXIT_USAGE, _images, _load
    loaded = _load(args)
    [(path, image, _error)] = list(_images([args.image]))
    if image is None:
        return EXIT_IMAGE
    if not 0 <= args.query < loaded.model.config.num_queries:
        print(f"error: --query must be 0..{loaded.model.config.num_queries - 1}", file=sys.stderr)
        return EXIT_USAGE
    return loaded, path, image


def _steps(value: str):
    return value if value == "auto" else int(value)


def _explain_params(args) -> dict:
    params = {"target": args.target}
    if args.layer:
        params["layer"] = args.layer
    if args.method == "ig":
        params.update(baseline=args.baseline, sigma=args.sigma, seed=args.seed, resolution=args.resolution,
                      steps=args.steps)
    return params


def cmd_explain(args) -> int:
    """One method's map for one detection: --raw writes the unnormalised map, --png an overlay."""
    import numpy as np
    from app.cli import EXIT_USAGE
    from core.methods.registry import METHODS
    found = _image_and_query(args)
    if isinstance(found, int):
        return found
    loaded, path, image = found
    try:
        result = METHODS[args.method].compute(loaded, loaded.pixel_values(image), args.query,
                                              {**METHODS[args.method].defaults, **_explain_params(args)})
    except ValueError as err:  # an unknown layer or target: the message lists the choices
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    explanation = result[args.method]
    heatmap = np.asarray(explanation.heatmap)
    if args.raw:
        np.save(args.raw, heatmap)
    if args.png:
        from components.heatmaps import colorize, resize_map, value_range
        from PIL import Image
        signed = args.method == "ig"
        zmin, zmax = value_range(heatmap, signed)
        scale = "RdBu_r" if signed else "Jet"
        colours = colorize(resize_map(heatmap, image.width, image.height), scale, zmin, zmax)
        Image.blend(image, Image.fromarray(colours), 0.5).save(args.png)
    report = {"image": path, "query": args.query, "method": args.method, **explanation.info,
              "shape": list(heatmap.shape), "min": float(heatmap.min()), "max": float(heatmap.max())}
    if args.json:
        print(json.dumps(report, default=str))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return EXIT_OK


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_compare(args) -> int:
    """Every method for one detection, scored (deletion / insertion AUC, pointing game) and ranked."""
    from app.cli import EXIT_USAGE
    from core.evaluation.compare import compare, default_methods, summary
    found = _image_and_query(args)
    if isinstance(found, int):
        return found
    loaded, path, image = found
    ig = {"baseline": args.baseline, "steps": args.steps, "sigma": args.sigma, "resolution": args.resolution}
    try:
        result = compare(loaded, loaded.pixel_values(image), args.query, default_methods(ig, args.layer))
    except ValueError as err:  # an unknown layer: the message lists the choices
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    report = {"image": path, **summary(result)}
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    print(f"{path}: query {args.query}, {report['wall_seconds']:.2f} s (lower deletion, higher insertion and "
          f"pointing game are better; best first)")
    for row in report["ranking"]:
        m = report["methods"][row["method"]]
        print(f"  {m['label']:<38} deletion {_num(m['deletion_auc'])}  insertion {_num(m['insertion_auc'])}  "
              f"pointing {_num(m['pointing_game'])}  mean rank {_num(row['mean_rank'])}")
    return EXIT_OK


def cmd_uncertainty(args) -> int:
    """MC-Dropout statistics of the detections at --threshold (same indices as `detect`)."""
    from app.cli import EXIT_IMAGE, EXIT_USAGE, _images, _load
    from core.models.detection import above, detect
    from core.models.mc_dropout import MAX_P, MAX_SAMPLES, mc_dropout
    if not 1 <= args.samples <= MAX_SAMPLES:
        print(f"error: --samples must be 1..{MAX_SAMPLES}, got {args.samples}", file=sys.stderr)
        return EXIT_USAGE
    if args.dropout is not None and not 0 <= args.dropout <= MAX_P:
        print(f"error: --dropout must be 0..{MAX_P}, got {args.dropout}", file=sys.stderr)
        return EXIT_USAGE
    loaded = _load(args)
    [(path, image, error)] = list(_images([args.image]))
    if image is None:
        if args.json:
            print(json.dumps({"image": path, "error": error}))
        return EXIT_IMAGE
    visible = above(detect(loaded, image), args.threshold)  # `detect`'s scores decide, as in the dashboard
    result = mc_dropout(loaded, loaded.pixel_values(image), image.size, samples=args.samples, p=args.dropout,
                        seed=args.seed, threshold=args.threshold)
    stats = {d["index"]: d for d in result["detections"]}
    dets = [{**stats[d["index"]], **d} for d in visible]
    if args.json:
        print(json.dumps({"image": path, **{k: v for k, v in result.items() if k != "detections"},
                          "detections": dets}))
        return EXIT_OK
    print(f"{path}: {len(dets)} detections at confidence >= {args.threshold:g}; {result['samples']} samples at "
          f"dropout {result['dropout']:g} (trained {result['trained_dropout']:g}), seed {result['seed']}")
    for d in dets:
        print(f"  {d['index']:3d}: {d['label']:<16} score {d['score']:.3f}  mean {d['score_mean']:.3f} "
              f"± {d['score_std']:.3f}  entropy {d['entropy']:.3f}  MI {d['mutual_information']:.4f}  "
              f"variation {d['variation_ratio']:.2f}  >= threshold {100 * d['above_threshold_fraction']:.0f}%  "
              f"slot swap {100 * d['slot_swap_fraction']:.0f}%  "
              f"box std [{', '.join(f'{v:.1f}' for v in d['box_std'])}]")
    return EXIT_OK


def add_all(sub, common) -> None:
    from core.demo.scenes import SCENE_SIZE
    p = sub.add_parser("scenes", help="write procedural demo scenes with ground truth")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--seed", type=int, default=1_000_000)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=SCENE_SIZE)
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("train-demo", help="train the bundled demo DETR from scratch on generated scenes")
    p.add_argument("--out", default="models/demo-detr")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", default=None, help="continue from a saved demo directory (fresh optimiser)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first training scene")
    p.set_defaults(func=cmd_train_demo)

    p = sub.add_parser("explain", help="explain one detection with one method")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--query", type=int, required=True, help="the detection's DETR query slot (its index)")
    p.add_argument("--method", required=True, choices=["gradcam", "gradcam++", "ig", "attention", "relevance"])
    p.add_argument("--layer", default=None, help="Grad-CAM: module name as in model.named_modules()")
    p.add_argument("--target", default="class", choices=["class", "cx", "cy", "w", "h"])
    p.add_argument("--baseline", default="black", choices=["black", "blur", "uniform", "gaussian", "mean", "expected"])
    p.add_argument("--steps", default=50, type=_steps, help="IG steps, or 'auto'")
    p.add_argument("--sigma", type=float, default=8.0, help="IG blurred baseline sigma (px)")
    p.add_argument("--seed", type=int, default=0, help="IG noise baselines")
    p.add_argument("--resolution", type=int, default=None, help="IG input short side (px); default: model input")
    p.add_argument("--raw", help="write the unnormalised map as .npy")
    p.add_argument("--png", help="write the map over the image as PNG")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("uncertainty", help="MC-Dropout uncertainty of the detections of one image")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--samples", type=int, default=30, help="stochastic forward passes, 1..100")
    p.add_argument("--dropout", type=float, default=None, help="dropout probability 0..0.9 (default: trained rate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dropout masks")
    p.add_argument("--threshold", type=float, default=0.7, help="detections shown: deterministic score >= this")
    p.add_argument("--json", action="store_true", help="one JSON object")
    common(p)
    p.set_defaults(func=cmd_uncertainty)

    from core.evaluation.compare import IG_DEFAULTS
    p = sub.add_parser("compare", help="every method for one detection, scored and ranked")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--query", type=int, required=True, help="the detection's DETR query slot (its index)")
    p.add_argument("--layer", default=None, help="Grad-CAM: module name as in model.named_modules()")
    p.add_argument("--baseline", default=IG_DEFAULTS["baseline"],
                   choices=["black", "blur", "uniform", "gaussian", "mean", "expected"])
    p.add_argument("--steps", default=IG_DEFAULTS["steps"], type=_steps, help="IG steps, or 'auto'")
    p.add_argument("--sigma", type=float, default=IG_DEFAULTS["sigma"], help="IG blurred baseline sigma (px)")
    p.add_argument("--resolution", type=int, default=None, help="IG input short side (px); default: model input")
    p.add_argument("--json", action="store_true", help="the scores table as one JSON object")
    common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate-demo", help="mAP of a model on held-out generated scenes")
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--seed", type=int, default=1_000_000, help="first held-out seed (training uses seeds < 1e6)")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=cmd_evaluate_demo, model="demo")

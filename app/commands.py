"""The subcommands of `python -m app` (app/cli.py parses, these run): serve, detect, explain, compare,
uncertainty, demo data and model. Parameter flags come from their declarations (core/params.py and
each method's PARAMS): the same ranges and defaults as the page, refused with exit 2 out of range."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_IMAGE, EXIT_MODEL = 0, 2, 3, 4


def _load(args):
    """The model for a batch command; falls back to the demo (one line on stderr) unless --no-fallback."""
    from core import service
    from core.models.loading import ModelUnavailable, load_model, load_model_or_demo
    try:
        loaded = (load_model if args.no_fallback else load_model_or_demo)(args.model, args.device)
    except ModelUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_MODEL)
    except OSError as err:
        print(f"error: model '{args.model}' could not be loaded: {err}", file=sys.stderr)
        raise SystemExit(EXIT_MODEL)
    if loaded.fallback_reason:
        print(f"notice: {loaded.fallback_reason}", file=sys.stderr)
    service.use_model(loaded)
    return loaded


def _images(paths):
    """(path, image or None, error or None) for each path; unusable ones say why on stderr."""
    from core.images import ImageError, decode_image
    for path in paths:
        try:
            yield path, decode_image(Path(path).read_bytes()), None
        except (ImageError, OSError) as err:
            message = str(err) if isinstance(err, ImageError) else f"cannot read file: {err.strerror or err}"
            print(f"error: {path}: {message}", file=sys.stderr)
            yield path, None, message


def _checked(params, values: dict, context: dict | None = None):
    """Declared parameters validated (core.params.validate), or the exit code after one line on stderr."""
    from core.params import ParamError, validate
    try:
        return validate(params, {k: v for k, v in values.items() if v is not None}, context)
    except ParamError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def cmd_serve(args) -> int:
    from app import create_app
    from app.settings import Settings
    settings = Settings(model=args.model, device=args.device, host=args.host, port=args.port, debug=args.debug)
    app = create_app(settings)
    app.run(host=settings.host, port=settings.port, debug=settings.debug)
    return EXIT_OK


def cmd_detect(args) -> int:
    from core.models.detection import above, detect
    from core.params import THRESHOLD
    checked = _checked([THRESHOLD], {"threshold": args.threshold})
    if checked == EXIT_USAGE:
        return EXIT_USAGE
    loaded = _load(args)
    status = EXIT_OK
    for path, image, error in _images(args.images):
        if image is None:
            status = EXIT_IMAGE
            if args.json:
                print(json.dumps({"image": path, "error": error}))
            continue
        dets = above(detect(loaded, image), checked["threshold"])
        if args.json:
            print(json.dumps({"image": path, "width": image.width, "height": image.height, "detections": dets}))
        else:
            print(f"{path} ({image.width}x{image.height}): {len(dets)} detections")
            for d in dets:
                print(f"  {d['index']:3d}: {d['label']:<16} {d['score']:.3f}  [{', '.join(f'{v:.1f}' for v in d['box'])}]")
    return status


def cmd_scenes(args) -> int:
    from core.demo.scenes import write_scenes
    write_scenes(Path(args.out), args.count, args.seed, args.size, version=args.scene_version)
    print(f"wrote {args.count} scenes, truth.json and annotations.json (COCO) to {args.out}")
    return EXIT_OK


def cmd_train_demo(args) -> int:
    import torch
    from core.demo.train import train
    if args.eos_coefficient is not None and not 0 < args.eos_coefficient <= 1:
        print("error: --eos-coefficient must be in (0, 1]", file=sys.stderr)
        return EXIT_USAGE
    if args.giou_coefficient is not None and not 1 <= args.giou_coefficient <= 20:
        print("error: --giou-coefficient must be an integer in 1..20", file=sys.stderr)
        return EXIT_USAGE
    if args.input_size is not None and not 64 <= args.input_size <= 1024:
        print("error: --input-size must be in 64..1024 px", file=sys.stderr)
        return EXIT_USAGE
    if args.warmup < 0:
        print("error: --warmup must be 0 or more steps", file=sys.stderr)
        return EXIT_USAGE
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(Path(args.out), steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                   eval_every=args.eval_every, device=args.device,
                   resume=Path(args.resume) if args.resume else None,
                   first_seed=args.first_seed, scene_version=args.scene_version,
                   eos_coefficient=args.eos_coefficient, giou_coefficient=args.giou_coefficient,
                   feature_stage=args.feature_stage, input_size=args.input_size, no_dropout=args.no_dropout,
                   log=lambda line: print(line, flush=True))
    print(json.dumps(result))
    return EXIT_OK


def cmd_evaluate_demo(args) -> int:
    """Issue 18's figures: mAP, duplicates and false positives at --threshold (% of true objects),
    weights MB, and detection time (preprocessing + forward) on one CPU thread."""
    import torch
    from core.models.detection import detect
    from core.evaluation.metrics import (COCO_IOUS, average_precision, duplicates_and_false_positives,
                                         mean_average_precision)
    from core.demo.scenes import CLASSES, make_scene
    from core.params import THRESHOLD
    checked = _checked([THRESHOLD], {"threshold": args.threshold})
    if checked == EXIT_USAGE:
        return EXIT_USAGE
    loaded = _load(args)
    preds, truths, seconds, threads = [], [], 0.0, torch.get_num_threads()
    torch.set_num_threads(1)  # the goal is per image on one core; restored for the rest of the process
    try:
        for s in range(args.seed, args.seed + args.scenes):
            image, truth = make_scene(s, version=args.scene_version)
            start = time.perf_counter()
            preds.append(detect(loaded, image))
            seconds += time.perf_counter() - start
            truths.append(truth)
    finally:
        torch.set_num_threads(threads)
    weights = sum(t.numel() * t.element_size() for t in loaded.model.state_dict().values())
    report = {
        "model": loaded.name, "scene_version": args.scene_version, "scenes": args.scenes, "seed": args.seed,
        "map50": round(mean_average_precision(preds, truths, CLASSES, (0.5,)), 4),
        "map50_95": round(mean_average_precision(preds, truths, CLASSES, COCO_IOUS), 4),
        "ap50_per_class": {c: round(average_precision(preds, truths, c, 0.5), 4) for c in CLASSES},
        # where localisation is lost: mAP at each of the ten IoU thresholds that map50_95 averages
        "ap_per_iou": {f"{t:.2f}": round(mean_average_precision(preds, truths, CLASSES, (t,)), 4) for t in COCO_IOUS},
        "threshold": checked["threshold"], **duplicates_and_false_positives(preds, truths, checked["threshold"]),
        "weights_mb": round(weights / 1e6, 2), "ms_per_image": round(1000 * seconds / args.scenes, 2), "threads": 1,
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return EXIT_OK


def _image_and_query(args):
    """(model, path, image) for a one-image, one-detection command, or the exit code to return."""
    loaded = _load(args)
    [(path, image, _error)] = list(_images([args.image]))
    if image is None:
        return EXIT_IMAGE
    if not 0 <= args.query < loaded.model.config.num_queries:
        print(f"error: --query must be 0..{loaded.model.config.num_queries - 1}", file=sys.stderr)
        return EXIT_USAGE
    return loaded, path, image


def _method_params(args, method) -> dict:
    """The flags of `method`'s declared parameters that were given (the rest take their defaults)."""
    return {p.name: getattr(args, p.name, None) for p in method.params}


def cmd_explain(args) -> int:
    """One method's map for one detection: --raw writes the unnormalised map, --png an overlay."""
    import numpy as np
    from core.methods.registry import METHODS, context
    found = _image_and_query(args)
    if isinstance(found, int):
        return found
    loaded, path, image = found
    method = METHODS[args.method]
    if method.reason(loaded):  # not for this model family (core.methods.registry.applicable): say why
        print(f"error: {method.reason(loaded)}", file=sys.stderr)
        return EXIT_USAGE
    params = _checked(method.params, _method_params(args, method), context(loaded))
    if params == EXIT_USAGE:
        return EXIT_USAGE
    mc = _mc_params(args)
    if mc == EXIT_USAGE:
        return EXIT_USAGE
    try:
        if mc:
            info, heatmap, std = _map_uncertainty(loaded, loaded.pixel_values(image), args, params, mc)
        else:
            explanation = method.compute(loaded, loaded.pixel_values(image), args.query, params)[args.method]
            info, heatmap = explanation.info, np.asarray(explanation.heatmap)
    except ValueError as err:  # e.g. a layer that runs twice in one forward: the message says why
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.raw:
        np.save(args.raw, heatmap)
    if mc and args.raw_std:
        np.save(args.raw_std, std)
    if args.png:
        from components.heatmaps import colorize, resize_map, value_range
        from PIL import Image
        signed = bool(heatmap.min() < 0)
        zmin, zmax = value_range(heatmap, signed)
        scale = "RdBu_r" if signed else "Jet"
        colours = colorize(resize_map(heatmap, image.width, image.height), scale, zmin, zmax)
        Image.blend(image, Image.fromarray(colours), 0.5).save(args.png)
    report = {"image": path, "query": args.query, "method": args.method, **info,
              "shape": list(heatmap.shape), "min": float(heatmap.min()), "max": float(heatmap.max())}
    if args.json:
        print(json.dumps(report, default=str))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return EXIT_OK


def _mc_params(args):
    """{mc_samples, dropout, seed} with --mc-samples, None without it, or the exit code."""
    from core.methods import mc_maps
    if args.mc_samples is None:
        if args.raw_std or args.dropout is not None:
            print("error: --dropout and --raw-std go with --mc-samples", file=sys.stderr)
            return EXIT_USAGE
        return None
    if args.method not in mc_maps.supported():
        print(f"error: --mc-samples is for {', '.join(mc_maps.supported())}; got {args.method}", file=sys.stderr)
        return EXIT_USAGE
    return _checked(mc_maps.PARAMS, {"mc_samples": args.mc_samples, "dropout": args.dropout, "seed": args.seed})


def _map_uncertainty(loaded, pixels, args, params: dict, mc: dict):
    """(JSON facts, mean map, std map) of the map under MC-Dropout (core/methods/mc_maps.py)."""
    from core.methods.mc_maps import map_uncertainty
    r = map_uncertainty(loaded, pixels, args.query, args.method, params, samples=mc["mc_samples"], p=mc["dropout"],
                        seed=mc["seed"])
    info = {k: v for k, v in r.items() if k not in ("mean", "std", "maps", "samples", "method", "query")}
    info.update(mc_samples=r["samples"], std_max=float(r["std"].max()))
    return info, r["mean"], r["std"]


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_compare(args) -> int:
    """Every method for one detection, scored (deletion / insertion AUC, pointing game) and ranked."""
    from core.evaluation.compare import compare, default_methods, summary
    from core.methods.registry import METHODS, context
    found = _image_and_query(args)
    if isinstance(found, int):
        return found
    loaded, path, image = found
    ig = {"baseline": args.baseline, "steps": args.steps, "sigma": args.sigma, "resolution": args.resolution}
    methods = default_methods({k: v for k, v in ig.items() if v is not None}, args.layer)
    for name, values in methods.items():
        checked = _checked(METHODS[name].params, values, context(loaded))
        if checked == EXIT_USAGE:
            return EXIT_USAGE
        methods[name] = checked
    try:
        result = compare(loaded, loaded.pixel_values(image), args.query, methods)
    except ValueError as err:  # e.g. a layer that runs twice in one forward: the message says why
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
    from core.models.detection import above, detect
    from core.models.mc_dropout import mc_dropout
    from core.params import THRESHOLD, UNCERTAINTY
    checked = _checked((*UNCERTAINTY, THRESHOLD), {p.name: getattr(args, p.name) for p in (*UNCERTAINTY, THRESHOLD)})
    if checked == EXIT_USAGE:
        return EXIT_USAGE
    args.samples, args.dropout, args.seed, args.threshold = (checked[k] for k in ("samples", "dropout", "seed",
                                                                                 "threshold"))
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


def _common(p) -> None:
    from app.settings import Settings
    p.add_argument("--model", default=Settings().model,
                   help="hub id, save_pretrained directory, or 'demo' (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--no-fallback", action="store_true", help="exit 4 instead of falling back to the demo model")


def add_all(sub) -> None:
    from core import params as P
    from core.demo.scenes import SCENE_SIZES, SCENE_VERSION
    from core.demo.train import FEATURE_STAGES
    from core.methods.registry import METHODS
    from app.settings import Settings

    p = sub.add_parser("serve", help="start the dashboard (the default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--model", default=Settings().model)
    p.add_argument("--device", default=None)
    p.add_argument("--debug", action="store_true", help="Dash debug mode (off unless asked for)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("detect", help="print the detections of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _common(p)
    P.add_arguments(p, [P.THRESHOLD])
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("scenes", help="write procedural demo scenes with ground truth")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--seed", type=int, default=1_000_000)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=None, help="default: the version's (v1 128, v2 256)")
    p.add_argument("--scene-version", type=int, choices=sorted(SCENE_SIZES), default=SCENE_VERSION,
                   help="1: the bundled model's scenes; 2: 256 px, occlusion and clutter (default: %(default)s)")
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("train-demo", help="train the bundled demo DETR from scratch on generated scenes")
    p.add_argument("--out", default="models/demo-detr")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=100,
                   help="steps of linear learning-rate warm-up before the cosine decay (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", default=None, help="continue from a saved demo directory (fresh optimiser)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first training scene")
    p.add_argument("--scene-version", type=int, choices=sorted(SCENE_SIZES), default=SCENE_VERSION,
                   help="train on these scenes at their size (default: %(default)s)")
    p.add_argument("--eos-coefficient", type=float, default=None,
                   help="weight of the no-object class in the loss, in (0, 1] (default: the model's; DETR's 0.1 for new models)")
    p.add_argument("--giou-coefficient", type=int, default=None,
                   help="weight of the generalised-IoU box loss, an integer in 1..20 (default: the model's; DETR's 2 for new models)")
    p.add_argument("--feature-stage", choices=FEATURE_STAGES, default=None,
                   help="the backbone stage the transformer reads: stage1, stage2 or stage3 (strides 4, 8, 16; "
                        "default: the model's, stage3 for new models); a change keeps every weight but the "
                        "input projection")
    p.add_argument("--input-size", type=int, default=None,
                   help="the model's input side in px, 64..1024: scenes are resized to it and the saved "
                        "pre-processing config resizes every image to it (default: the scenes' size)")
    p.add_argument("--no-dropout", action="store_true",
                   help="train the model as it is served: dropout off and the backbone's batch-norm frozen "
                        "(a last stage; the config keeps its dropout rate for MC-Dropout)")
    p.set_defaults(func=cmd_train_demo)

    p = sub.add_parser("explain", help="explain one detection with one method")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--query", type=int, required=True, help="the detection's query slot (its index)")
    p.add_argument("--method", required=True, choices=list(METHODS))
    seen: set = set()
    for method in METHODS.values():  # each declared parameter once; a method reads only its own
        P.add_arguments(p, method.params, seen)
    from core.methods.mc_maps import PARAMS as MC_MAP_PARAMS
    P.add_arguments(p, MC_MAP_PARAMS, seen)  # --mc-samples, --dropout (--seed is shared)
    p.add_argument("--raw", help="write the unnormalised map as .npy (with --mc-samples: the mean map)")
    p.add_argument("--raw-std", help="with --mc-samples: write the per-pixel standard deviation map as .npy")
    p.add_argument("--png", help="write the map over the image as PNG")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("uncertainty", help="MC-Dropout uncertainty of the detections of one image")
    p.add_argument("image", metavar="IMAGE")
    P.add_arguments(p, [*P.UNCERTAINTY, P.THRESHOLD])
    p.add_argument("--json", action="store_true", help="one JSON object")
    _common(p)
    p.set_defaults(func=cmd_uncertainty)

    p = sub.add_parser("compare", help="every method for one detection, scored and ranked")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--query", type=int, required=True, help="the detection's query slot (its index)")
    ig = METHODS["ig"].params
    P.add_arguments(p, [P.LAYER, *(q for q in ig if q.name in ("baseline", "steps", "sigma", "resolution"))])
    p.add_argument("--json", action="store_true", help="the scores table as one JSON object")
    _common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate-demo", help="mAP of a model on held-out generated scenes")
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--seed", type=int, default=1_000_000, help="first held-out seed (training uses seeds < 1e6)")
    p.add_argument("--scene-version", type=int, choices=sorted(SCENE_SIZES), default=SCENE_VERSION)
    P.add_arguments(p, [P.THRESHOLD])  # the duplicate and false positive counts are at this score
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_evaluate_demo, model="demo")
    __import__("app.evaluate_cmd", fromlist=["add_parser"]).add_parser(sub, _common)  # `evaluate`: app/evaluate_cmd.py

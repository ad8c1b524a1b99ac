"""`python -m app evaluate`: a model on a labelled COCO dataset (core/evaluation/evaluate.py).

Writes to --out: evaluation.json (every field of the result but the per-detection rows; the
fields are listed in core/evaluation/evaluate.py's docstring), detections.csv (one row per
detection, core/evaluation/report.py), report.html (standalone, reads offline), and cache/ (the
per-image results: a rerun or an interrupted run resumes from them). A progress bar goes to
stderr when it is a terminal. --json prints the summary (the JSON file without "explained") as
one object on stdout. Exit codes: 0 ok, 2 bad usage (missing files, bad parameters, unknown
methods), 4 model unavailable.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _bar(stream=None):
    """progress(done, total) drawing one line on a terminal; nothing elsewhere."""
    stream = stream or sys.stderr  # looked up when called: the stream in use now
    if not stream.isatty():
        return None
    start, last = time.monotonic(), [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.2:
            return
        last[0] = now
        filled = int(30 * done / max(total, 1))
        stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * done / max(total, 1):5.1f}%  "
                     f"{now - start:6.1f} s")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return progress


def _print(result: dict) -> None:
    from core.evaluation.evaluate import METRICS
    num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{result['model']} on {result['dataset']['name']}: {result['images']} images "
          f"({result['images_cached']} from the cache), {result['seconds']['total']:.1f} s")
    if result["dataset"]["unmatched_categories"]:
        unknown = ", ".join(result["dataset"]["unmatched_categories"])
        print(f"  categories the model does not know (left out): {unknown}")
    print(f"  AP {num(result['ap'])}  AP50 {num(result['ap50'])}  AP75 {num(result['ap75'])}  "
          f"small {num(result['ap_small'])}  medium {num(result['ap_medium'])}  large {num(result['ap_large'])}")
    print("  per class: " + ", ".join(f"{k} {num(v)}" for k, v in result["per_class_ap"].items()))
    for name, block in (("plain", result), ("MC-Dropout", result.get("mc"))):
        if block:
            print(f"  calibration ({name}, confidence > {result['threshold']:g}, {block['detections']} detections): "
                  f"D-ECE {num(block['d_ece'])}  LA-ECE {num(block['la_ece'])}  OCE {num(block['oce'])}  "
                  f"LRP {num(block['lrp'])}")
    for name, e in result["explanations"].items():
        print(f"  {name} ({e['detections']} detections): " + "  ".join(
            f"{k} {num(e[k]['mean'])} [{num(e[k]['low'])}, {num(e[k]['high'])}]" for k in METRICS))


def cmd_evaluate(args) -> int:
    from app.commands import EXIT_OK, EXIT_USAGE, _load
    from core import params as P
    from core.evaluation.coco import DatasetError, load_coco
    from core.evaluation.evaluate import PARAMS, check_methods, evaluate, summary
    from core.evaluation.report import write_csv, write_html
    values = {p.name: getattr(args, p.name) for p in PARAMS if getattr(args, p.name) is not None}
    try:  # parameters first: a bad value costs no model load
        P.validate(PARAMS, values)
        methods = check_methods(args.methods or "")
    except P.ParamError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    for path, kind in ((args.images, "images folder"), (args.annotations, "annotations file")):
        if not Path(path).exists():
            print(f"error: {kind} {path} does not exist", file=sys.stderr)
            return EXIT_USAGE
    loaded = _load(args)
    try:
        dataset = load_coco(args.images, args.annotations, loaded.id2label)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate(loaded, dataset, methods=methods, progress=_bar(), cache_dir=out / "cache", **values)
    (out / "evaluation.json").write_text(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    write_csv(result, out / "detections.csv")
    write_html(result, out / "report.html")
    if args.json:
        print(json.dumps(summary(result)))
    else:
        _print(result)
        print(f"  wrote {out / 'evaluation.json'}, {out / 'detections.csv'}, {out / 'report.html'}")
    return EXIT_OK


def add_parser(sub, common) -> None:
    from core import params as P
    from core.evaluation.evaluate import PARAMS
    p = sub.add_parser("evaluate", help="AP, calibration and explanation quality of a model on a COCO dataset")
    p.add_argument("--images", required=True, help="folder of the dataset's images")
    p.add_argument("--annotations", required=True, help="COCO annotations JSON (images, annotations, categories)")
    p.add_argument("--methods", default="", help="explanation methods to score, comma-separated (default: none)")
    p.add_argument("--out", default="evaluation", help="output folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    P.add_arguments(p, PARAMS)
    common(p)
    p.set_defaults(func=cmd_evaluate)

"""Batch subcommands beyond `serve` and `detect`: demo data and model, explanations, uncertainty."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EXIT_OK = 0


def cmd_scenes(args) -> int:
    from core.scenes import write_scenes
    write_scenes(Path(args.out), args.count, args.seed, args.size)
    print(f"wrote {args.count} scenes and truth.json to {args.out}")
    return EXIT_OK


def cmd_train_demo(args) -> int:
    import torch
    from core.train_demo import train
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(Path(args.out), steps=args.steps, batch=args.batch, lr=args.lr, eval_every=args.eval_every,
                   device=args.device, log=lambda line: print(line, flush=True))
    print(json.dumps(result))
    return EXIT_OK


def cmd_evaluate_demo(args) -> int:
    import torch
    from app.cli import _load
    from core.detection import detect
    from core.metrics import COCO_IOUS, average_precision, mean_average_precision
    from core.scenes import CLASSES, make_scene
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


def add_all(sub, common) -> None:
    from core.scenes import SCENE_SIZE
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
    p.set_defaults(func=cmd_train_demo)

    p = sub.add_parser("evaluate-demo", help="mAP of a model on held-out generated scenes")
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--seed", type=int, default=1_000_000, help="first held-out seed (training uses seeds < 1e6)")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=cmd_evaluate_demo, model="demo")

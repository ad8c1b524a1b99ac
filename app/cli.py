"""`python -m app <subcommand>`: the dashboard and the batch interface, on the same core functions.

Exit codes: 0 ok, 2 bad usage, 3 an image was unusable, 4 model unavailable.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_IMAGE, EXIT_MODEL = 0, 2, 3, 4


def _load(args):
    """The model for a batch command; falls back to the demo (one line on stderr) unless --no-fallback."""
    from core.models.loading import ModelUnavailable, load_model, load_model_or_demo
    from core import service
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


def _read_image(path: str):
    from core.images import decode_image
    return decode_image(Path(path).read_bytes())


def _images(paths):
    """(path, image or None, error or None) for each path; unusable ones say why on stderr."""
    from core.images import ImageError
    for path in paths:
        try:
            yield path, _read_image(path), None
        except (ImageError, OSError) as err:
            message = str(err) if isinstance(err, ImageError) else f"cannot read file: {err.strerror or err}"
            print(f"error: {path}: {message}", file=sys.stderr)
            yield path, None, message


def cmd_serve(args) -> int:
    from app import create_app
    from app.settings import Settings
    settings = Settings(model=args.model, device=args.device, host=args.host, port=args.port,
                        debug=args.debug)
    settings.export()
    app = create_app(settings)
    app.run(host=settings.host, port=settings.port, debug=settings.debug)
    return EXIT_OK


def cmd_detect(args) -> int:
    from core.models.detection import above, detect
    loaded = _load(args)
    status = EXIT_OK
    for path, image, error in _images(args.images):
        if image is None:
            status = EXIT_IMAGE
            if args.json:
                print(json.dumps({"image": path, "error": error}))
            continue
        dets = above(detect(loaded, image), args.threshold)
        if args.json:
            print(json.dumps({"image": path, "width": image.width, "height": image.height, "detections": dets}))
        else:
            print(f"{path} ({image.width}x{image.height}): {len(dets)} detections")
            for d in dets:
                print(f"  {d['index']:3d}: {d['label']:<16} {d['score']:.3f}  [{', '.join(f'{v:.1f}' for v in d['box'])}]")
    return status


def _common(p: argparse.ArgumentParser, images: bool = True) -> None:
    from core.models.loading import DEFAULT_MODEL
    import os
    p.add_argument("--model", default=os.environ.get("DETR_MODEL", DEFAULT_MODEL),
                   help="hub id, save_pretrained directory, or 'demo' (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--no-fallback", action="store_true", help="exit 4 instead of falling back to the demo model")


def parser() -> argparse.ArgumentParser:
    import os
    from core.models.loading import DEFAULT_MODEL
    root = argparse.ArgumentParser(prog="python -m app", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest="command")

    p = sub.add_parser("serve", help="start the dashboard (the default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--model", default=os.environ.get("DETR_MODEL", DEFAULT_MODEL))
    p.add_argument("--device", default=None)
    p.add_argument("--debug", action="store_true", help="Dash debug mode (off unless asked for)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("detect", help="print the detections of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _common(p)
    p.add_argument("--threshold", type=float, default=0.7)
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_detect)

    from app import commands
    commands.add_all(sub, _common)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv or ["serve"])
    if args.command is None:
        args = parser().parse_args(["serve", *argv])
    _quiet()
    return args.func(args)


def _quiet() -> None:
    """Library progress bars and warnings are noise on a command line."""
    import logging
    import warnings
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)

"""`python -m app <subcommand>`: the dashboard and the batch interface, on the same core functions.

Exit codes: 0 ok, 2 bad usage or a parameter out of its declared range, 3 an image was unusable,
4 model unavailable.
"""
from __future__ import annotations

import argparse
import sys

from app import commands


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m app", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands.add_all(root.add_subparsers(dest="command"))
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv or ["serve"])
    if args.command is None:
        args = parser().parse_args(["serve", *argv])
    _quiet()
    from app.settings import Settings
    Settings().apply()  # the result cache (DETR_CACHE_DIR, REDIS_URL) for batch commands too
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

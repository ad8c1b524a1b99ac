"""Thin Dash callbacks: read inputs, call core/, hand results to components/.

Each module exposes `register(app)`, which wires its functions with the public `app.callback`;
`register_all(app)` is what create_app (and a Celery worker, to name the same tasks) calls.
"""
from __future__ import annotations

import logging

log = logging.getLogger("detr.callbacks")

# How often the browser polls a background job (dash's default is 1 s): a job answered from the
# cache reaches the page at the first poll, and progress bars move at this rate. A poll of a
# running job costs the server a few ms.
POLL_MS = 250

HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}


def register_all(app, settings) -> None:
    from callbacks import captions, compare, detection, evaluate, explain, links, uncertainty
    for module in (detection, explain, compare, uncertainty, evaluate, links, captions):
        module.register(app, settings)


def job_options(button: str, cancel: str, progress: str) -> dict:
    """What every button-started background job shares: its button disabled, its Cancel button and
    progress bar shown while it runs; the bar driven by set_progress(done, total, label)."""
    from dash import Input, Output
    return dict(background=True, interval=POLL_MS, prevent_initial_call=True,
                running=[(Output(button, "disabled"), True, False),
                         (Output(cancel, "style"), {"display": "inline-block"}, HIDDEN),
                         (Output(progress, "style"), SHOWN, HIDDEN)],
                progress=[Output(progress, "value"), Output(progress, "max"), Output(progress, "label")],
                cancel=[Input(cancel, "n_clicks")])


def run_job(what: str, ref: dict, work, set_progress=None) -> dict:
    """The body every model job shares: job-process setup, a first progress tick, the work, and any
    failure turned into {"error": sentence} for the card (the rest of the page keeps working).
    A core.params.ParamError (a value out of its declared range) is the person's to fix: its own
    sentence, not logged as a failure. `work()` returns fields to add to the reference (or None);
    `what` names the job in the sentence ("The explanation")."""
    from core import cache, service
    from core.errors import failure
    from core.params import ParamError
    service.job_process_setup()
    if set_progress:
        set_progress((0, 1, "starting"))
    try:
        return {**ref, **(work() or {})}
    except ParamError as err:
        log.info("refused: %s", err)
        return {**ref, "error": str(err)}
    except cache.ResultUnavailable as err:  # the web process answering without the model (app/background.py):
        return {**ref, "error": f"{what} failed: {err}."}  # a lost job's reason (a mere cache probe discards this)
    except Exception as err:  # noqa: BLE001 - shown in the card; the rest of the page keeps working
        return {**ref, "error": failure(err, what)[1]}

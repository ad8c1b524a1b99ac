"""Logging for the operator, configured once per process; plain sentences for the person.

`setup(level)`: the standard `logging` root logger at Settings.log_level (DETR_LOG_LEVEL); under
gunicorn its handlers (its error log and format), otherwise one stream handler on stderr. Celery
workers keep the handlers Celery installs.

`failure(err, what)`: every failed job or callback goes through it: logged with its traceback and a
short error id; the person gets a sentence with that id, never a traceback or an exception's repr.
"""
from __future__ import annotations

import logging
import secrets

log = logging.getLogger("detr")
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_configured = False


def setup(level: str = "INFO") -> None:
    global _configured
    root = logging.getLogger()
    root.setLevel(level.upper())
    if _configured:
        return
    gunicorn = logging.getLogger("gunicorn.error")
    if gunicorn.handlers:  # under gunicorn: our records go where its own go
        for handler in gunicorn.handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        gunicorn.propagate = False  # its records are handled once, by its handlers
    elif not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    _configured = True


def _for_person() -> tuple[type, ...]:
    """Errors whose message is written for the person (a refused parameter or image, a lost or
    refused job): the sentence carries it. Anything else is a bug or an outage: only the id."""
    from app.background import JobTimeLimit
    from core.cache import ResultUnavailable
    from core.images import ImageError
    from core.params import ParamError
    from core.service import ImageGone
    return ParamError, ImageError, ResultUnavailable, ImageGone, JobTimeLimit


def new_id() -> str:
    return secrets.token_hex(4)


def failure(err: BaseException, what: str) -> tuple[str, str]:
    """Log a failure of `what` ("The explanation", "Detection") with its traceback and a new error
    id; (error id, the sentence to show the person)."""
    error_id = new_id()
    if isinstance(err, _for_person()):
        log.warning("%s failed [error %s]: %s", what, error_id, err, exc_info=err, extra={"error_id": error_id})
        reason = str(err.args[0] if err.args and isinstance(err.args[0], str) else err).rstrip(". ")
        return error_id, f"{what} failed: {reason} (error id {error_id})."
    log.error("%s failed [error %s]", what, error_id, exc_info=err, extra={"error_id": error_id})
    return error_id, (f"{what} failed because of an error on the server (error id {error_id}). "
                      "Try again; if it keeps failing, give the operator this id.")

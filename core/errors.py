"""Failures: logged for the operator with a traceback and a short error id; the person gets a plain
sentence with that id, never a traceback or an exception's repr. Every failed job or callback goes
through `failure` (app/background.py for lost or crashed jobs, callbacks/ for their own work)."""
from __future__ import annotations

import logging
import secrets

log = logging.getLogger("detr")


class JobTimeLimit(TimeoutError):
    """A job ran past Settings.job_time_limit."""


def _for_person() -> tuple[type, ...]:
    """Errors whose message is written for the person (a refused parameter or image, a lost or
    refused job): the sentence carries it. Anything else is a bug or an outage: only the id."""
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

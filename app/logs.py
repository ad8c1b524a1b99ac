"""Logging for the operator, configured once per process; plain sentences for the person.

`setup(level)`: the standard `logging` root logger at Settings.log_level (DETR_LOG_LEVEL); under
gunicorn its handlers (its error log and format), otherwise one stream handler on stderr. Celery
workers keep the handlers Celery installs.

Failures themselves are reported through core.errors.failure (callbacks and jobs alike).
"""
from __future__ import annotations

import logging

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

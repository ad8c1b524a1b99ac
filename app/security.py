"""What protects the server from its requests: body size, the secret key, per-session identity.

- `limit_requests`: Flask's MAX_CONTENT_LENGTH from the upload cap, so Werkzeug answers 413 to an
  oversize body from its Content-Length, before reading it (a streamed body without one is cut
  off at the cap).
- `use_secret_key`: DETR_SECRET_KEY (through Settings) signs the session cookie and dash's
  background-job handles. Without one, a random key is shared through the job store; a
  multi-process start logs a warning, since whoever can write that store could then forge both.
- `session_id`: a random id per browser session in Flask's signed session cookie: a person can
  drop it (and get a new one) but not take another's; the per-session job cap counts by it.
"""
from __future__ import annotations

import logging
import secrets

import flask

log = logging.getLogger(__name__)
REQUEST_MARGIN = 1 * 2**20  # the rest of a callback request around the file: JSON, other inputs


def request_cap(max_upload_bytes: int) -> int:
    """The largest request body: the file in base64 (4 bytes per 3, as dcc.Upload sends it) plus a margin."""
    return -(-max_upload_bytes // 3) * 4 + REQUEST_MARGIN


def limit_requests(server: flask.Flask, settings) -> int:
    server.config["MAX_CONTENT_LENGTH"] = cap = request_cap(settings.max_upload_bytes)
    return cap


def use_secret_key(server: flask.Flask, settings, shared_secret=None) -> None:
    """Settings.secret_key, else `shared_secret(generate)` (the background manager's store-kept
    secret: the same in every process sharing that store), else a random key for this process."""
    if settings.secret_key:
        server.secret_key = settings.secret_key
        return
    secret = shared_secret(lambda: secrets.token_bytes(32)) if shared_secret else None
    server.secret_key = secret or secrets.token_bytes(32)


_warned = False


def warn_without_secret_key(settings) -> bool:
    """A start of several processes (gunicorn, Celery) without DETR_SECRET_KEY: say so in the log (once)."""
    global _warned
    if settings.secret_key or _warned:
        return False
    _warned = True
    log.warning("DETR_SECRET_KEY is not set: the web processes share a generated key through the job store, "
                "so whoever can write to that store can forge job handles and session cookies. Set "
                "DETR_SECRET_KEY (the same long random value on every web machine).")
    return True


def use_sessions(server: flask.Flask) -> None:
    """Every response carries the session cookie (HttpOnly, SameSite=Lax) with the person's id."""
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                         SESSION_COOKIE_NAME="detr_session")
    server.before_request(_ensure_session)


def _ensure_session() -> None:  # a before_request hook answering anything would replace the response
    session_id()


def session_id() -> str | None:
    """This request's browser-session id (made on its first request); None outside a request."""
    if not flask.has_request_context():
        return None
    sid = flask.session.get("sid")
    if not isinstance(sid, str):
        sid = flask.session["sid"] = secrets.token_urlsafe(16)
    return sid

"""Server-side result cache shared by every web and job process.

diskcache on local disk by default (bounded, least-recently-stored eviction); Redis when
REDIS_URL is set (bounded by Redis' own maxmemory policy). Values are pickled; keys are hashes
of JSON-able parts, so equal requests from different people hit the same entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "cache"
DEFAULT_SIZE = 2 * 1024**3
_MISSING = object()


def key(*parts: Any) -> str:
    """A stable key for JSON-able parts (model id, image hash, query, method, params). Whole floats
    count as ints: params that went through the browser come back as 8 where the job had 8.0."""
    return hashlib.sha256(json.dumps(_canonical(parts), sort_keys=True, default=str).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


class DiskStore:
    def __init__(self, directory: str | Path, size_limit: int = DEFAULT_SIZE):
        import diskcache
        self.directory = str(directory)
        self._cache = diskcache.Cache(self.directory, size_limit=size_limit, eviction_policy="least-recently-used")

    def get(self, k: str, default=None):
        return self._cache.get(k, default)

    def set(self, k: str, value: Any, expire: float | None = None) -> None:
        self._cache.set(k, value, expire=expire)

    def delete(self, k: str) -> None:
        self._cache.delete(k)


class RedisStore:
    def __init__(self, url: str, ttl: int = 24 * 3600):
        import redis
        # bounded waits: a request must fail with a message, not hang, when Redis goes away
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        self.ttl = ttl

    def get(self, k: str, default=None):
        raw = self._redis.get("detr:" + k)
        return default if raw is None else pickle.loads(raw)

    def set(self, k: str, value: Any, expire: float | None = None) -> None:
        self._redis.set("detr:" + k, pickle.dumps(value), ex=int(expire or self.ttl))

    def delete(self, k: str) -> None:
        self._redis.delete("detr:" + k)


_store = None


def store():
    """The process' cache, chosen by the environment (REDIS_URL, DETR_CACHE_DIR, DETR_CACHE_SIZE)."""
    global _store
    if _store is None:
        if os.environ.get("REDIS_URL"):
            _store = RedisStore(os.environ["REDIS_URL"])
        else:
            _store = DiskStore(os.environ.get("DETR_CACHE_DIR", DEFAULT_DIR),
                               int(os.environ.get("DETR_CACHE_SIZE", DEFAULT_SIZE)))
    return _store


def reset() -> None:
    """Forget the chosen store (tests change the environment)."""
    global _store
    _store = None


class ResultUnavailable(RuntimeError):
    """memo() under only_cached() found no entry (the message says why the work cannot be done)."""


class _OnlyCached:
    def __init__(self, reason: str):
        self.reason, self.missed = reason, False


_only_cached: ContextVar[_OnlyCached | None] = ContextVar("only_cached", default=None)


@contextmanager
def only_cached(reason: str):
    """Within it, memo() answers from the cache and raises ResultUnavailable(reason) on a miss
    instead of computing; `.missed` tells afterwards whether anything was missing. The web
    process answers fully cached jobs this way without starting one, and turns a lost job into
    the callback's own error message (app/background.py)."""
    state = _OnlyCached(reason)
    token = _only_cached.set(state)
    try:
        yield state
    finally:
        _only_cached.reset(token)


def memo(k: str, compute: Callable[[], Any]) -> Any:
    """The cached value of `k`, computing and storing it on a miss."""
    limited = _only_cached.get()
    try:
        value = store().get(k, _MISSING)
    except Exception:
        if limited is not None:
            limited.missed = True
        raise
    if value is _MISSING:
        if limited is not None:
            limited.missed = True
            raise ResultUnavailable(limited.reason)
        value = compute()
        store().set(k, value)
    return value

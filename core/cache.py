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
import threading
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


class _ForkGuard:
    """SQLite (diskcache) operations and os.fork exclude each other. A process forked while another
    thread of its parent is inside a database operation inherits that thread's lock with no thread to
    release it: its first write then waits out diskcache's timeout (bench.load with 8 sessions: 3 of
    8 failed so without this guard, none with it). Operations run together;
    a fork waits until none runs (at most `wait` s) and holds new ones back meanwhile."""

    def __init__(self, wait: float = 30):
        self.wait = wait
        self._reset()

    def _reset(self):  # also in the child after a fork: one thread, nothing running
        self._cond, self._running, self._forking, self._depth = threading.Condition(), 0, False, threading.local()

    @contextmanager
    def __call__(self):
        depth = getattr(self._depth, "n", 0)
        with self._cond:
            if depth == 0:  # a thread already inside runs on (it may be the one forking)
                self._cond.wait_for(lambda: not self._forking)
            self._running += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def before_fork(self):
        self._cond.acquire()
        self._forking = True
        mine = getattr(self._depth, "n", 0)
        self._cond.wait_for(lambda: self._running == mine, timeout=self.wait)

    def after_fork_in_parent(self):
        self._forking = False
        self._cond.notify_all()
        self._cond.release()


fork_guard = _ForkGuard()
os.register_at_fork(before=fork_guard.before_fork, after_in_parent=fork_guard.after_fork_in_parent,
                    after_in_child=fork_guard._reset)


class DiskStore:
    def __init__(self, directory: str | Path, size_limit: int = DEFAULT_SIZE):
        import diskcache
        self.directory = str(directory)
        self._cache = diskcache.Cache(self.directory, size_limit=size_limit, eviction_policy="least-recently-used")

    def get(self, k: str, default=None):
        with fork_guard():
            return self._cache.get(k, default)

    def set(self, k: str, value: Any, expire: float | None = None) -> None:
        with fork_guard():
            self._cache.set(k, value, expire=expire)

    def delete(self, k: str) -> None:
        with fork_guard():
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

"""Server-side result cache shared by every web and job process.

diskcache on local disk by default (bounded, least-recently-stored eviction); Redis when
configured (bounded by Redis' own maxmemory policy); app.settings.Settings.apply chooses. Keys
are hashes of JSON-able parts, so equal requests from different people hit the same entry.

Values are never pickled: whoever can write to a shared store must not run code in the processes
that read it. They are stored in a small typed format (`encode`/`decode`): JSON, with arrays and
tensors as .npy bytes (loaded without pickle) and only the dataclasses named in DATACLASSES. An
entry in any other format is refused: logged, and treated as missing.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import struct
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "cache"
DEFAULT_SIZE = 2 * 1024**3
_MISSING = object()
log = logging.getLogger(__name__)


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


# --- the value format -------------------------------------------------------------------------------

MAGIC = b"DETR-CACHE-1\n"
TAG = "__detr__"
# the only classes a stored value may rebuild (module, class name): data holders, no behaviour on load
DATACLASSES = {"Explanation": ("core.methods.explanation", "Explanation"),
               "BackboneFeatures": ("core.models.mc_dropout", "BackboneFeatures")}


class UnsafeEntry(ValueError):
    """A stored entry that is not in the store's own format (e.g. a pickle): never decoded."""


def _dataclass(name: str):
    module, attr = DATACLASSES[name]
    return getattr(importlib.import_module(module), attr)


def encode(value: Any) -> bytes:
    """value -> bytes: MAGIC, header length, JSON header (the value with arrays replaced by tagged
    references), then each array's .npy bytes. Types it does not know raise TypeError."""
    import numpy as np
    blobs: list[bytes] = []

    def blob(array) -> int:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)  # object arrays raise: they would need pickle
        blobs.append(buf.getvalue())
        return len(blobs) - 1

    def tag(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [tag(x) for x in v]
        if isinstance(v, tuple):
            return {TAG: "tuple", "items": [tag(x) for x in v]}
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v) and TAG not in v:
                return {k: tag(x) for k, x in v.items()}
            return {TAG: "dict", "items": [[tag(k), tag(x)] for k, x in v.items()]}
        if isinstance(v, np.ndarray):
            return {TAG: "ndarray", "blob": blob(v)}
        if isinstance(v, np.generic):
            return {TAG: "scalar", "blob": blob(np.asarray(v))}
        if isinstance(v, bytes):
            return {TAG: "bytes", "blob": blob(np.frombuffer(v, dtype=np.uint8))}
        if type(v).__name__ == "Tensor" and type(v).__module__.startswith("torch"):
            t = v.detach().cpu()
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype == "bfloat16":  # numpy has none: float32 holds it exactly
                t = t.float()
            return {TAG: "tensor", "dtype": dtype, "blob": blob(t.numpy())}
        name = type(v).__name__
        if dataclasses.is_dataclass(v) and name in DATACLASSES and _dataclass(name) is type(v):
            return {TAG: "dataclass", "type": name,
                    "fields": {f.name: tag(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        raise TypeError(f"core.cache cannot store a {type(v).__module__}.{name} (add it to encode)")

    tagged = tag(value)
    header = json.dumps({"value": tagged, "sizes": [len(b) for b in blobs]}).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs])


def decode(raw: bytes) -> Any:
    """bytes from `encode` -> the value; anything else raises UnsafeEntry without being interpreted."""
    import numpy as np
    if not isinstance(raw, (bytes, bytearray, memoryview)) or bytes(raw[:len(MAGIC)]) != MAGIC:
        raise UnsafeEntry("not a core.cache entry")
    raw = memoryview(raw)
    try:
        (n,) = struct.unpack("<Q", raw[len(MAGIC):len(MAGIC) + 8])
        start = len(MAGIC) + 8
        header = json.loads(bytes(raw[start:start + n]))
        offsets, at = [], start + n
        for size in header["sizes"]:
            offsets.append((at, at + size))
            at += size
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise UnsafeEntry(f"a damaged core.cache entry ({err})") from None

    def array(i):
        lo, hi = offsets[i]
        return np.load(io.BytesIO(raw[lo:hi]), allow_pickle=False)

    def untag(v):
        if isinstance(v, list):
            return [untag(x) for x in v]
        if not isinstance(v, dict):
            return v
        kind = v.get(TAG)
        if kind is None:
            return {k: untag(x) for k, x in v.items()}
        if kind == "tuple":
            return tuple(untag(x) for x in v["items"])
        if kind == "dict":
            return {untag(k): untag(x) for k, x in v["items"]}
        if kind == "ndarray":
            return array(v["blob"])
        if kind == "scalar":
            return array(v["blob"])[()]
        if kind == "bytes":
            return array(v["blob"]).tobytes()
        if kind == "tensor":
            import torch
            return torch.from_numpy(array(v["blob"]).copy()).to(getattr(torch, v["dtype"]))
        if kind == "dataclass" and v.get("type") in DATACLASSES:
            return _dataclass(v["type"])(**{k: untag(x) for k, x in v["fields"].items()})
        raise UnsafeEntry(f"an unknown tag in a core.cache entry: {kind!r}")
    return untag(header["value"])


def _decoded(k: str, raw, default):
    try:
        return decode(raw)
    except UnsafeEntry as err:
        log.warning("refused cache entry %s: %s", k[:80], err)
        return default


@functools.cache
def safe_disk():
    """A diskcache Disk that stores only bytes, str and numbers as such and refuses to unpickle: an
    entry or key that diskcache would pickle is an error, on the way in and out."""
    import diskcache
    from diskcache.core import MODE_PICKLE

    class SafeDisk(diskcache.Disk):
        def put(self, key):
            if not isinstance(key, (str, bytes, int, float)):
                raise TypeError(f"cache keys are strings, not {type(key).__name__}")
            return super().put(key)

        def get(self, key, raw):
            if not raw:
                raise UnsafeEntry("a pickled cache key")
            return super().get(key, raw)

        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if not read and type(value) not in (bytes, str, int, float):
                raise TypeError(f"this cache stores bytes, not {type(value).__name__}")
            return super().store(value, read, key)

        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                raise UnsafeEntry("a pickled entry")
            return super().fetch(mode, filename, value, read)
    return SafeDisk


# --- the stores -----------------------------------------------------------------------------------

class DiskStore:
    def __init__(self, directory: str | Path, size_limit: int = DEFAULT_SIZE):
        import diskcache
        self.directory = str(directory)
        self._cache = diskcache.Cache(self.directory, size_limit=size_limit, eviction_policy="least-recently-used",
                                      disk=safe_disk())

    def get(self, k: str, default=None):
        with fork_guard():
            try:
                raw = self._cache.get(k, _MISSING)
            except UnsafeEntry as err:
                log.warning("refused cache entry %s: %s", k[:80], err)
                return default
        return default if raw is _MISSING else _decoded(k, raw, default)

    def set(self, k: str, value: Any, expire: float | None = None) -> None:
        raw = encode(value)
        with fork_guard():
            self._cache.set(k, raw, expire=expire)

    def delete(self, k: str) -> None:
        with fork_guard():
            self._cache.delete(k)


class RedisStore:
    """Redis (`redis://`, or `rediss://:password@host:6380/0` with a password over TLS)."""

    def __init__(self, url: str, ttl: int = 24 * 3600):
        import redis
        # bounded waits: a request must fail with a message, not hang, when Redis goes away
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        self.ttl = ttl

    def get(self, k: str, default=None):
        raw = self._redis.get("detr:" + k)
        return default if raw is None else _decoded(k, raw, default)

    def set(self, k: str, value: Any, expire: float | None = None) -> None:
        self._redis.set("detr:" + k, encode(value), ex=int(expire or self.ttl))

    def delete(self, k: str) -> None:
        self._redis.delete("detr:" + k)


_store = None
_config: dict = {"redis_url": None, "directory": DEFAULT_DIR, "size": DEFAULT_SIZE}


def configure(redis_url: str | None = None, directory: str | Path = DEFAULT_DIR, size: int = DEFAULT_SIZE) -> None:
    """Which store this process uses (app.settings.Settings.apply; tests: a private directory)."""
    global _store
    _config.update(redis_url=redis_url, directory=directory, size=size)
    _store = None


def store():
    """The process' cache: Redis when configured with a URL, else diskcache in the configured directory."""
    global _store
    if _store is None:
        if _config["redis_url"]:
            _store = RedisStore(_config["redis_url"])
        else:
            _store = DiskStore(_config["directory"], _config["size"])
    return _store


def reset() -> None:
    """Forget the chosen store (the next store() opens it again)."""
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

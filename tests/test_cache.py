"""The shared result cache: keys, and forks that never inherit a half-done SQLite operation."""
import os
import threading
import time

from core.cache import DiskStore, fork_guard, key


def test_key_is_canonical_and_distinguishes_parameters():
    assert key("cam", {"a": 1, "b": 2.0}) == key("cam", {"b": 2.0, "a": 1})
    assert key("cam", {"a": 1}) != key("cam", {"a": 2}) != key("ig", {"a": 2})


def _fork_and_write(store: DiskStore) -> tuple[float, int]:
    """Fork; the child writes to the store and exits 0 on success. (fork time, child's exit code)."""
    pid = os.fork()
    if pid == 0:  # child: one thread; a lock inherited from a busy parent would make this hang
        try:
            store.set("child", "ok")
            os._exit(0 if store.get("child") == "ok" else 1)
        finally:
            os._exit(2)
    forked = time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return forked, os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return forked, -9


def test_fork_waits_for_cache_operations_of_other_threads(tmp_path):
    store = DiskStore(tmp_path)
    inside, left = threading.Event(), []

    def busy():  # another request's thread, in the middle of a cache operation
        with fork_guard():
            inside.set()
            time.sleep(0.4)
            left.append(time.monotonic())

    thread = threading.Thread(target=busy)
    thread.start()
    inside.wait()
    forked, code = _fork_and_write(store)
    thread.join()
    assert code == 0
    assert forked >= left[0]  # the fork waited for the operation to end


def test_operations_during_a_fork_wait_and_nested_ones_do_not_deadlock(tmp_path):
    store = DiskStore(tmp_path)
    with fork_guard():  # the forking thread itself inside an operation: the fork goes ahead
        _, code = _fork_and_write(store)
    assert code == 0
    results = []
    threads = [threading.Thread(target=lambda i=i: (store.set(f"k{i}", i), results.append(store.get(f"k{i}"))))
               for i in range(8)]
    for t in threads:
        t.start()
    forks = [_fork_and_write(store)[1] for _ in range(3)]
    for t in threads:
        t.join()
    assert forks == [0, 0, 0] and sorted(results) == list(range(8))


# --- the value format: no pickles -----------------------------------------------------------------

import pickle  # noqa: E402 - only to forge hostile entries
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from core import cache  # noqa: E402
from core.cache import RedisStore, ResultUnavailable, decode, encode, memo, only_cached  # noqa: E402
from core.methods.explanation import Explanation  # noqa: E402
from core.models.mc_dropout import BackboneFeatures  # noqa: E402


def _same(a, b):
    """Equal values of equal types, arrays and tensors included (dtype and shape too)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, (Explanation, BackboneFeatures)):
        _same(vars(a), vars(b))
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_every_kind_of_value_the_service_stores_round_trips_exactly():
    rng = np.random.default_rng(0)
    values = [
        {"detections": [{"index": 3, "label": "cat", "score": 0.9, "box": [1.0, 2.0, 3.5, 4.0]}], "n": None},
        ((60, 40), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),  # an uploaded image: (size, pixels)
        {"gradcam": Explanation(rng.random((7, 9), dtype=np.float32), {"layer": "x", "delta": float("nan")}),
         "gradcam++": Explanation(np.zeros((2, 2)), {})},
        BackboneFeatures(torch.randn(1, 6, 4), torch.ones(1, 6, dtype=torch.long), torch.randn(1, 6, 4), (2, 3)),
        {0: np.float32(1.5), "scores": np.arange(6, dtype=np.int64).reshape(2, 3), "t": torch.arange(3.0)},
        {"__detr__": "not a tag", "nested": [(1, 2), {"a": b"\x00\xff"}], "flag": True},
        torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        12, "text", [],
    ]
    for value in values:
        raw = encode(value)
        assert raw.startswith(cache.MAGIC)
        _same(decode(raw), value)


def test_values_it_does_not_know_are_refused_on_the_way_in():
    class Mine:
        pass
    for value in (Mine(), {1, 2}, np.array([Mine()], dtype=object)):
        with pytest.raises((TypeError, ValueError)):
            encode(value)


class _Boom:
    """Unpickling this runs code: what an attacker with write access to Redis would store."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickles_and_damaged_entries_are_refused_never_loaded(tmp_path, caplog):
    marker = tmp_path / "pwned"
    hostile = pickle.dumps(_Boom(str(marker)))
    store = DiskStore(tmp_path / "store")
    # a pickle written into the store's database behind its back (as diskcache would write one)
    import diskcache
    diskcache.Cache(store.directory).set("forged", {"a": _Boom(str(marker))})
    store._cache.set("raw", hostile)  # raw bytes that are a pickle, not our format
    store._cache.set("cut", encode({"a": np.arange(5)})[:30])
    with caplog.at_level("WARNING", logger="core.cache"):
        assert store.get("forged", "missing") == "missing"
        assert store.get("raw", "missing") == "missing"
        assert store.get("cut", "missing") == "missing"
    assert not marker.exists()
    assert len([r for r in caplog.records if "refused cache entry" in r.getMessage()]) == 3
    store.set("ok", {"a": np.arange(5)})
    assert store.get("ok")["a"].tolist() == [0, 1, 2, 3, 4]


@pytest.fixture
def private_cache(tmp_path):
    cache.configure(directory=tmp_path / "cache")
    yield cache.store()
    cache.configure()


def test_memo_computes_once_and_only_cached_never_computes(private_cache):
    calls = []

    def compute():
        calls.append(1)
        return {"map": np.ones((2, 2))}
    assert memo("k", compute)["map"].sum() == 4
    assert memo("k", compute)["map"].sum() == 4
    assert calls == [1]
    with only_cached("the worker is gone") as limited:
        assert memo("k", compute)["map"].sum() == 4
        assert not limited.missed
        with pytest.raises(ResultUnavailable, match="the worker is gone"):
            memo("other", compute)
    assert limited.missed and calls == [1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server on a free loopback port, with a password (as the README asks)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    import redis
    port, password = _free_port(), "s3cret-test"
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--requirepass", password],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_store_round_trips_and_refuses_pickles(redis_url, tmp_path):
    import redis
    with pytest.raises(redis.AuthenticationError):  # the password is required
        redis.Redis.from_url(redis_url.replace(":s3cret-test@", "")).get("x")
    store = RedisStore(redis_url, ttl=60)
    value = {"gradcam": Explanation(np.arange(6.0).reshape(2, 3), {"layer": "l"})}
    store.set("e", value)
    _same(store.get("e"), value)
    assert 0 < redis.Redis.from_url(redis_url).ttl("detr:e") <= 60
    marker = tmp_path / "pwned"
    redis.Redis.from_url(redis_url).set("detr:forged", pickle.dumps(_Boom(str(marker))))
    assert store.get("forged", "missing") == "missing" and not marker.exists()
    store.delete("e")
    assert store.get("e") is None


def test_the_configured_store_is_redis_when_a_url_is_given(redis_url):
    cache.configure(redis_url=redis_url)
    try:
        assert isinstance(cache.store(), RedisStore)
        memo("m", lambda: [1, 2])
        assert RedisStore(redis_url).get("m") == [1, 2]
    finally:
        cache.configure()

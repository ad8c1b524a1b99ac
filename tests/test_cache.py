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

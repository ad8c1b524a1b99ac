"""core.memory: freed heap memory goes back to the OS (glibc), so one stage's garbage does not add to the next's peak."""
import numpy as np
import pytest

from core import memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(memory._TRIM is None, reason="the C library has no malloc_trim (not glibc)")
def test_release_free_memory_returns_freed_heap_to_the_os():
    # 2,000 blocks of 100 KiB: below glibc's 128 KiB mmap threshold, so they come from the heap; the last
    # one stays alive, so glibc cannot shrink the heap from its top by itself
    blocks = [np.ones(100 * 1024, dtype=np.uint8) for _ in range(2000)]
    last = blocks.pop()
    del blocks
    held = _rss_mib()
    memory.release_free_memory()
    assert held - _rss_mib() > 150  # of the ~195 MiB freed
    assert last.sum() == 100 * 1024

"""Memory: giving back what a pass has freed, and trading time for memory where a job asks.

glibc serves allocations up to 32 MiB from its heap and keeps what is freed there for reuse; larger
ones (a float64 copy of a layer's activations at 800 px) get fresh pages of their own. So after a
backward at 800 px frees ~1 GiB of heap, the process keeps it and whatever comes next adds to it:
measured on DETR-R50 at 800 px, ODAM's peak RSS went from 2192 to 1511 MiB and Grad-CAM's from 1977 to
1519 MiB with `release_free_memory()` after each backward, at no measurable cost in time. (A fixed
mmap threshold of 64 KiB does the same everywhere but made every forward 38% slower; Compare's maps,
the peak of a job, run with 16 MiB: `saving_memory`.)
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint

try:  # the C library of this process; malloc_trim and mallopt are glibc's (none on macOS or musl)
    _TRIM, _MALLOPT = ctypes.CDLL(None).malloc_trim, ctypes.CDLL(None).mallopt
except (OSError, AttributeError):
    _TRIM = _MALLOPT = None
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# glibc's ceiling for its own (dynamic) mmap threshold on 64-bit, where a long-running process settles
HEAP_BLOCKS_UP_TO = 32 << 20
# saving_memory's threshold: Compare of DETR-R50 at 800 px peaked at 1654-1739 MiB RSS against 2087-2118
# with glibc's heap, its IG phase taking 82 s against 67 s (bench/cpu_r50.py --trace); IG alone at
# 4 steps 1595-1687 MiB against 1866-2133 (bench/memory.py rows "2 stages" and "glibc's heap")
MAPPED_FROM = 16 << 20
_THREAD = threading.local()  # this thread's choices: "saving", "recompute"


def release_free_memory() -> None:
    """Return the free pages of the C heap to the OS (the next allocations take fresh pages)."""
    if _TRIM is not None:
        _TRIM(0)


@contextmanager
def mapped_blocks(threshold: int):
    """Within this block, allocations of `threshold` bytes or more get pages of their own, returned to
    the OS when freed, instead of heap that glibc keeps and fragments. For the whole process (mallopt):
    other threads' passes run a little slower meanwhile (fresh pages are zero-filled on first touch),
    with the same results. After the block the threshold is glibc's ceiling, where its dynamic
    threshold settles. It must be set before the large allocations it is for: blocks freed to the heap
    earlier are reused first."""
    if _MALLOPT is None:
        yield
        return
    _MALLOPT(_M_MMAP_THRESHOLD, int(threshold))
    try:
        yield
    finally:
        _MALLOPT(_M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO)


@contextmanager
def _on(flag: str):
    """This thread's `flag` is true within the block."""
    before = getattr(_THREAD, flag, False)
    setattr(_THREAD, flag, True)
    try:
        yield
    finally:
        setattr(_THREAD, flag, before)


@contextmanager
def saving_memory():
    """Within this block, on this thread, passes that can trade time for memory do (`saving()`), and
    allocations from MAPPED_FROM bytes get pages of their own (`mapped_blocks`, process-wide)."""
    with _on("saving"), mapped_blocks(MAPPED_FROM):
        yield


def saving() -> bool:
    return getattr(_THREAD, "saving", False)


@contextmanager
def recomputed(modules):
    """Within this block, on this thread, `modules` keep no activations for the backward, which runs
    them again (torch.utils.checkpoint): the same gradients, for one more forward of them. Each gets
    a forward of its own for the block (other threads' calls run as usual), removed after it."""
    installed = [m for m in modules if "forward" not in vars(m)]  # another thread's block may hold one
    for m in installed:
        m.forward = _checkpointing(m.forward)
    try:
        with _on("recompute"):
            yield
    finally:
        for m in installed:
            del m.forward


def _checkpointing(forward):
    def run(*args, **kwargs):
        if getattr(_THREAD, "recompute", False) and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)
    return run

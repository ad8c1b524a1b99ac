"""Giving memory a pass has freed back to the operating system.

glibc serves allocations up to 32 MiB from its heap and keeps what is freed there for reuse; larger
ones (a float64 copy of a layer's activations at 800 px) get fresh pages of their own. So after a
backward at 800 px frees ~1 GiB of heap, the process keeps it and whatever comes next adds to it:
measured on DETR-R50 at 800 px, ODAM's peak RSS went from 2192 to 1511 MiB and Grad-CAM's from 1977 to
1519 MiB with `release_free_memory()` after each backward, at no measurable cost in time. (A fixed
mmap threshold does the same everywhere but made every forward 38% slower.)
"""
from __future__ import annotations

import ctypes

try:  # the C library of this process; malloc_trim is glibc's (none on macOS or musl)
    _TRIM = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    _TRIM = None


def release_free_memory() -> None:
    """Return the free pages of the C heap to the OS (the next allocations take fresh pages)."""
    if _TRIM is not None:
        _TRIM(0)

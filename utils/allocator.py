"""Process-wide allocator tuning for CPU speed (glibc only); called once by main.py."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's own upper bound for its dynamic threshold


def keep_freed_memory() -> bool:
    """Let glibc keep freed heap memory for reuse instead of returning it to the OS (CPU speed).

    By default glibc trims the heap once a large block at its top is free, so after every keyframe
    (hundreds of MB of activations) the next frames' buffers are fresh pages again, and the page faults
    cost ~25 % of a non-keyframe step on a VM (measured: 22 → 28-30 ms at 1024×2048). Fixing the mmap
    threshold at 32 MB and never trimming keeps blocks below 32 MB in the heap; larger ones are still
    mapped and unmapped per use, so the resident size stays bounded by the peak of the smaller blocks.
    Process-wide, so only main.py calls it. Returns False where it does not apply (not glibc).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))


def heap_is_kept() -> bool:
    """Whether ``keep_freed_memory`` applies here (glibc's ``mallopt`` exists): main.py calls it before every
    mode, so a report can say so without calling it a second time."""
    return _mallopt() is not None


def _mallopt():
    """glibc's ``mallopt``, or None (not Linux, or musl or another libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None

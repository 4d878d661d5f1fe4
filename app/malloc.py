"""glibc malloc tuning for the serving process (Linux/glibc only; a no-op elsewhere).

Why: the service decodes uploads of very different sizes (32-px to 4,000-px images, 0.5-s to 30-s audio)
in several threads. With glibc's defaults each thread may get its own malloc arena (up to 8 × cores), each
holding on to the peak of what its threads once used, and the mmap threshold moves with every large free:
RSS crept up long after warm-up (benchmarks/results/ANALYSIS.md, memory runs). Two ``mallopt(3)``
settings, the same as the ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` environment variables, bound
that:

* ``M_ARENA_MAX`` = 2: at most two arenas, so what the heaps keep after a burst is bounded by two arenas'
  peaks, not one per thread;
* ``M_MMAP_THRESHOLD`` = 32 MiB (the largest value glibc's dynamic threshold reaches on 64-bit,
  ``DEFAULT_MMAP_THRESHOLD_MAX``), fixed: setting it turns off the dynamic threshold, so the bound does not
  move. Buffers below it (request bodies, base64 text, decoded JPEG/PNG rows, audio) are reused from the
  two arenas; larger ones (e.g. a float64 copy of a large 16-bit image) are mmapped and returned to the OS
  on free. Pillow allocates image memory in blocks of at most 16 MiB.

Why not a small fixed threshold (128 KiB, glibc's initial value, used before): every large buffer of every
request was then a fresh mmap whose pages the kernel faults in and zeroes: on the realistic upload mix
(``python -m benchmarks.realistic``) 8,500–11,000 page faults and 23–35 ms of kernel CPU time per request,
against 1,200–1,900 and 4–5 ms at 32 MiB, and 10.4 vs 15.1 requests/s at 32 connections on 2 cores
(measured side by side, each server's process CPU user/system time and minor faults from ``/proc``). RSS
growth after warm-up stays bounded with 32 MiB (``python -m benchmarks.memory``: +2.0 % over 10,000
random-shape requests, +0.6 % over 10,000 realistic ones; docs/benchmarks.md, "Memory"); RSS after
warm-up on the realistic mix is 563 MB against 504 MB with 128 KiB (the arenas keep their peak).

Applied once, before the thread pools start. Variables set in the environment take precedence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Final

logger = logging.getLogger("app.malloc")

#: ``mallopt`` parameter numbers from glibc's ``<malloc.h>``.
M_MMAP_THRESHOLD: Final[int] = -3
M_ARENA_MAX: Final[int] = -8
ARENA_MAX: Final[int] = 2
MMAP_THRESHOLD_BYTES: Final[int] = 32 * 1024 * 1024


def tune_malloc() -> dict[str, int]:
    """Apply the settings above through glibc's ``mallopt``.

    Returns:
        The parameters actually set (empty off glibc, or where the environment already sets them).
    """
    if not sys.platform.startswith("linux"):
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl (Alpine) has no mallopt
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for env, param, value in (
        ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ):
        if env in os.environ:
            continue
        if mallopt(param, value) == 1:  # mallopt returns 1 on success
            applied[env] = value
        else:
            logger.warning("mallopt(%d, %d) failed", param, value)
    return applied

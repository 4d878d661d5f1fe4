"""glibc malloc tuning for the serving process (Linux/glibc only; a no-op elsewhere).

Why: the service decodes uploads of very different sizes (32-px to 4,000-px images, 0.5-s to 30-s audio)
in several threads. With glibc's defaults each thread may get its own malloc arena (up to 8 × cores) and
the mmap threshold rises after every large free, so later large buffers come from the arenas' heaps and
fragment them: RSS creeps up long after warm-up (benchmarks/results/ANALYSIS.md, memory runs). Two
``mallopt(3)`` settings, the same as the ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` environment
variables, bound that:

* ``M_ARENA_MAX`` = 2: at most two arenas;
* ``M_MMAP_THRESHOLD`` = 32 MiB (the largest value glibc's dynamic threshold reaches on 64-bit,
  ``DEFAULT_MMAP_THRESHOLD_MAX``), fixed: setting it turns off the dynamic threshold, so the bound does not
  move; request bodies, decoded images and audio (all under 32 MiB at the service's limits) are reused
  from the two arenas, only larger buffers are mmapped and returned to the OS on free.

Why not a small threshold: with glibc's initial 128 KiB, every large buffer of every request (the body,
its base64 text, the decoded image) was a fresh mmap whose pages the kernel faults in and zeroes: on the
realistic upload mix (``python -m benchmarks.realistic``) 8,500–11,000 page faults and 23–35 ms of kernel
CPU time per request, against 1,200–1,900 and 4–5 ms at 32 MiB, and 10.4 vs 15.1 requests/s at 32
connections on 2 cores (measured side by side, each server's process CPU user/system time and minor
faults from ``/proc``).

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

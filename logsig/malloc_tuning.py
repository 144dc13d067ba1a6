"""glibc malloc settings for the long-running processes (gateway, workers, agents).

Every batch passes through buffers of a megabyte or more: the frame read from a socket, the
batch packed for Redis and fetched back, the text a worker scans. glibc's default thresholds
adapt to such sizes, but its trim threshold only to twice the largest block freed so far, so
the heap top is handed back to the kernel after nearly every batch and grown again for the
next one, and every page costs a fault when it is touched again. Measured end to end at
10,000-line batches: about 320,000 page faults per million lines, and a gateway spending more
CPU in the kernel than in Python. Fixed thresholds (setting either one stops the adapting)
keep those pages in the heap, and batch after batch reuses them.

The price: each process (each worker child too) may keep up to :data:`TRIM_THRESHOLD` of
freed memory at its heap top instead of returning it.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Allocations below this come from the heap (a frame at the default ``MAX_FRAME_BYTES``
included); glibc refuses more than 32 MiB on 64-bit systems."""
TRIM_THRESHOLD = 64 * 1024 * 1024
"""Free memory at the heap top beyond this is returned to the kernel."""


def tune_malloc() -> bool:
    """Keep large buffers in the heap. False when the C library has no ``mallopt`` or refused
    a threshold (musl's is a stub; 32-bit glibc allows smaller ones): nothing breaks, the
    process only faults more."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    done = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done
    if not done:
        log.debug("mallopt refused a threshold: large buffers may fault pages in per batch")
    return done

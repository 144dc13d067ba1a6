"""glibc malloc settings for the long-running processes (gateway, workers, agents).

Every batch passes through buffers of a megabyte or more: the frame read from a socket, the
batch packed for Redis and fetched back, the text a worker scans. By default glibc serves an
allocation that large with its own ``mmap`` and unmaps it when it is freed (or trims the
heap top back to the kernel), so the next batch's buffers are fresh pages again and every
page costs a fault when first touched. Measured end to end at 10,000-line batches: about
320,000 page faults per million lines, and a gateway spending more CPU in the kernel than
in Python. With both thresholds raised, the heap keeps those pages and batch after batch
reuses them.

The price is that a process keeps up to :data:`TRIM_THRESHOLD` of freed memory instead of
returning it; its peak use, which is what limits a deployment, does not change.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Allocations below this come from the heap (a ``MAX_FRAME_BYTES`` frame included); glibc
refuses more than 32 MiB on 64-bit systems."""
TRIM_THRESHOLD = 64 * 1024 * 1024
"""Free memory at the heap top beyond this is returned to the kernel."""


def tune_malloc() -> bool:
    """Keep large buffers in the heap; False where the C library is not glibc (nothing set)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    done = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done
    if not done:
        log.debug("mallopt refused the thresholds: large buffers stay mmapped")
    return done

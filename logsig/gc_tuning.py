"""Garbage-collector settings for the long-running processes (gateway, workers, agents).

They allocate a few container objects per line (decoded records, tuples, lists), and
reference counting frees nearly all of them; the cyclic collector only matters for cycles.
With CPython's default threshold (700 allocations) a young collection runs every few hundred
lines, and the older generations' passes walk every object alive: in the gateway holding
thousands of chunks, decoding cost three times as much with the defaults as without the
collector (benchmarks/gateway.py, 10,000 connections).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect young objects far less often and never rescan what exists at start-up."""
    gc.collect()
    gc.freeze()  # modules, rules, compiled patterns: alive for the whole process
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)

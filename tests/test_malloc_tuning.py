"""tune_malloc: batch-sized buffers reuse heap pages instead of faulting fresh ones in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="glibc's mallopt")

# What a gateway does per batch, in little: a frame-sized buffer, a copy of it, a consumed
# read buffer; all freed before the next round.
CHURN = """
import json, resource, sys
from logsig.malloc_tuning import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
frame = (b"x" * 120 + b"\\n") * 12_000
def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(200):
    data = frame + b"!"
    joined = data.replace(b"\\n", b" ")
    buffer = bytearray(data)
    del buffer[:700_000]
    del data, joined, buffer
print(json.dumps({"tuned": tuned, "faults": faults() - before}))
"""


def churn(mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def test_batch_buffers_stop_faulting_once_tuned() -> None:
    default, tuned = churn("default"), churn("tuned")
    assert tuned["tuned"] is True
    pages_per_round = 3 * 121 * 12_000 // 4096
    # Untuned, this churn faults in most of its pages every round; tuned, only the first.
    assert int(default["faults"]) > 50 * pages_per_round
    assert int(tuned["faults"]) < 5 * pages_per_round

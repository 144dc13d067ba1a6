"""The end-to-end benchmark runs (``--quick``) and reports every figure it promises."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.e2e", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    pipeline = report["pipeline"]
    assert pipeline["lines"] == 20_000 and pipeline["lines_per_s"] > 0
    assert all(pipeline[f"cpu_{part}"] > 0 for part in ("gateway", "worker", "redis", "agents"))
    assert report["naive (per-line tasks, sample extrapolated)"]["lines"] == 300
    assert set(report["ratios"]) == {"pipeline_over_naive", "ceiling_over_pipeline",
                                     "cpu_pipeline_over_ceiling"}

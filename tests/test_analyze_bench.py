"""The analysis benchmark runs end to end (``--quick``) and its two reports agree."""

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
    out = tmp_path / "analyze.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.analyze", "--quick", "--out",
                           str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["identical_reports"] is True
    assert report["file"]["lines"] == 20_000 and report["workers"] == 2
    assert report["single"]["median_s"] > 0 and report["distributed"]["median_s"] > 0
    assert report["distributed"]["chunks"] == 4
    assert "speed-up" in proc.stdout

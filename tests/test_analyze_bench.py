"""The analysis benchmark runs end to end (``--quick``) and its two reports agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_quick_benchmark

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_benchmark_quick_run(tmp_path: Path) -> None:
    output, report = run_quick_benchmark("analyze", tmp_path / "analyze.json", timeout=120)
    assert report["identical_reports"] is True
    assert report["file"]["lines"] == 20_000 and report["workers"] == 2
    assert report["single"]["median_s"] > 0 and report["distributed"]["median_s"] > 0
    assert report["distributed"]["chunks"] == 4
    assert "speed-up" in output

"""The end-to-end benchmark runs (``--quick``) and reports every figure it promises."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def check_latency(figures: dict, prefix: str = "") -> None:
    """Samples arrived, none lost, percentiles ordered and plausible (seconds, not minutes)."""
    samples, missing = figures[f"{prefix}samples"], figures[f"{prefix}missing"]
    p50, p95, p99 = (figures[f"{prefix}{p}_ms"] for p in ("p50", "p95", "p99"))
    assert samples >= 5 and missing == 0
    assert 0 < p50 <= p95 <= p99 <= figures[f"{prefix}max_ms"] < 30_000


def run_group(args: list[str], timeout: float) -> tuple[int, str]:
    """Run the benchmark in its own process group; on timeout end the group, so no
    redis-server, gateway, worker or agent it started outlives the test."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the benchmark stops its stacks on SIGTERM
        try:
            output, _ = proc.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # nothing left of the group
                os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"benchmark still running after {timeout} s:\n{output}")
    return proc.returncode, output


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    code, output = run_group([sys.executable, "-m", "benchmarks.e2e", "--quick", "--out",
                              str(out)], timeout=240)
    assert code == 0, output
    report = json.loads(out.read_text())
    pipeline = report["pipeline"]
    assert pipeline["lines"] == 20_000 and pipeline["lines_per_s"] > 0
    assert all(pipeline[f"cpu_{part}"] > 0 for part in ("gateway", "worker", "redis", "agents"))
    assert report["naive (per-line tasks, sample extrapolated)"]["lines"] == 300
    assert set(report["ratios"]) == {"pipeline_over_naive", "ceiling_over_pipeline",
                                     "cpu_pipeline_over_ceiling"}

    latency = report["latency"]
    check_latency(latency)
    assert latency["timeout_s"] == 1.0 and latency["target_p99_ms"] == 1250.0
    assert latency["meets_target"] == (latency["p99_ms"] <= 1250.0)
    # Paced at half the sustained rate, and the writer kept that pace.
    assert latency["rate_lines_per_s"] == pytest.approx(pipeline["lines_per_s"] / 2)
    assert latency["written_lines_per_s"] > 0.8 * latency["rate_lines_per_s"]

    sweep = report["batch_sweep"]
    assert sweep["timeout_s"] == 1.0 and "at most" in sweep["sizing"]
    assert [p["batch_size"] for p in sweep["points"]] == [1, 1000]
    for point in sweep["points"]:
        assert point["lines"] > 0 and point["lines_per_s"] > 0
        assert point["seconds"] <= sweep["seconds_per_point"] + 1
        assert point["latency_rate_lines_per_s"] == pytest.approx(point["lines_per_s"] / 2)
        check_latency(point, "latency_")
    # The plot is optional (matplotlib is the bench extra): either drawn or skipped with a note.
    plot = tmp_path / "batch_sweep.png"
    assert plot.exists() or "no plot: matplotlib is not installed" in output

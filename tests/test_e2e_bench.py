"""The end-to-end benchmark runs (``--quick``) and reports every figure it promises."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest

from tests.conftest import run_quick_benchmark

pytestmark = pytest.mark.slow


def check_latency(figures: dict, prefix: str = "") -> None:
    """Samples arrived, none lost, percentiles ordered and plausible (seconds, not minutes)."""
    samples, missing = figures[f"{prefix}samples"], figures[f"{prefix}missing"]
    p50, p95, p99 = (figures[f"{prefix}{p}_ms"] for p in ("p50", "p95", "p99"))
    assert samples >= 5 and missing == 0
    assert 0 < p50 <= p95 <= p99 <= figures[f"{prefix}max_ms"] < 30_000


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_benchmark_quick_run(tmp_path: Path) -> None:
    output, report = run_quick_benchmark("e2e", tmp_path / "e2e.json", timeout=240)
    pipeline = report["pipeline"]
    assert pipeline["lines"] == 20_000 and pipeline["lines_per_s"] > 0
    # CPU comes in clock ticks (10 ms): 20,000 lines can cost an agent less than one tick.
    assert all(pipeline[f"cpu_{part}"] >= 0 for part in ("gateway", "worker", "redis", "agents"))
    assert pipeline["cpu_s_per_m_lines"] > 0
    assert report["naive (per-line tasks, sample extrapolated)"]["lines"] == 300
    assert set(report["ratios"]) == {"pipeline_over_naive", "ceiling_over_pipeline",
                                     "cpu_pipeline_over_ceiling"}
    # Each round's figures are kept, and the ratio quoted is the median of the rounds' own.
    rounds = report["rounds"]
    assert rounds and all(r["pipeline_over_naive"] == pytest.approx(
        r["pipeline_lines_per_s"] / r["naive_lines_per_s"]) for r in rounds)
    assert report["ratios"]["pipeline_over_naive"] == pytest.approx(
        statistics.median(r["pipeline_over_naive"] for r in rounds))
    assert "pipeline/naive" in output

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

"""The gateway-alone benchmark runs (``--quick``) with sane figures; EVENT_LOOP picks the loop."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from gateway.server import _loop_factory
from logsig.errors import SettingsError
from tests.conftest import run_quick_benchmark


def test_event_loop_setting_picks_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    assert _loop_factory("asyncio") is None
    assert _loop_factory("uvloop") is uvloop.new_event_loop
    assert _loop_factory("auto") is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert _loop_factory("auto") is None
    with pytest.raises(SettingsError, match="EVENT_LOOP=uvloop but the uvloop package"):
        _loop_factory("uvloop")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_benchmark_quick_run(tmp_path: Path) -> None:
    output, report = run_quick_benchmark("gateway", tmp_path / "gateway.json", timeout=120)
    assert len(report) == 4  # three closed-loop points and the idle scenario
    for name, point in report.items():
        assert "reason" not in point, f"{name}: {point}"
        for loop in ("uvloop", "asyncio"):
            f = point[loop]
            assert f["lines"] > 0 and f["lines_per_s"] > 0, (name, loop)
            assert 0 < f["batches"] <= f["lines"], (name, loop)
            assert 0 < f["ack_p50_ms"] <= f["ack_p99_ms"] < 10_000, (name, loop)
            assert 20 < f["gateway_rss_mib"] < 2_000 and f["gateway_cpu_s"] > 0, (name, loop)
            assert f["lost_connections"] == 0, (name, loop)
        assert point["ratio_uvloop_over_asyncio"]["lines_per_s"] > 0
    scenario = next(p for p in report.values() if p["idle"])
    assert scenario["idle"] == 200 and scenario["active"] == 10
    assert scenario["offered_lines_per_s"] == 20_000
    # Paced, not saturated: what was offered is what got through.
    assert scenario["uvloop"]["lines_per_s"] == pytest.approx(20_000, rel=0.2)
    assert set(scenario["targets"]) == {"uvloop", "asyncio"}
    assert "uvloop/asyncio" in output and "target < 200" in output

"""``logsig results`` on a Redis populated by the real store."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import redis

from logsig.batch import Batch, Chunk, Segment
from logsig.keys import Keys
from logsig.settings import Settings
from tests.conftest import logsig_cmd
from workers.results import read_results, show
from workers.rules import load_rules
from workers.tasks import build_state, process_batch

SSH_FAIL = "sshd[7]: Failed password for root from 203.0.113.9 port 22 ssh2"
DOTENV = '203.0.113.4 - - [01/Jan/2024:00:00:00 +0000] "GET /.env HTTP/1.1" 404 1 "-" "-"'


@pytest.fixture
def populated(redis_server, redis_client: redis.Redis) -> Settings:  # type: ignore[no-untyped-def]
    settings = Settings(redis_url=redis_server.url)
    state = build_state(settings, [r for r in load_rules() if r.threshold is None])
    state.store.publish_rules(state.rules)
    batch = Batch("t", [
        Chunk("r-1", [Segment.of("web1", "auth.log", 1_700_000_000.0, [SSH_FAIL] * 3 + ["ok"])]),
        Chunk("r-2", [Segment.of("web2", "access.log", 1_700_000_060.0, [DOTENV, "ok", "ok"])]),
    ])
    process_batch(state, batch)
    process_batch(state, batch)
    return settings


def test_read_results(populated: Settings, redis_client: redis.Redis) -> None:
    res = read_results(redis_client, Keys(), limit=2)
    assert res["totals"] == {"lines": 7, "batches": 1, "chunks": 2, "matches": 4, "bytes":
                             3 * len(SSH_FAIL) + len(DOTENV) + 6, "duplicates": 7,
                             "alerts": 0}
    assert res["signatures"] == [
        {"id": "sshd-failed-password", "title": "SSH failed password", "severity": "medium",
         "count": 3},
        {"id": "web-dotenv-probe", "title": ".env secrets file probe", "severity": "medium",
         "count": 1},
    ]
    assert res["agents"] == [
        {"host": "web1", "lines": 4, "matches": 3,
         "top": [{"id": "sshd-failed-password", "count": 3}]},
        {"host": "web2", "lines": 3, "matches": 1, "top": [{"id": "web-dotenv-probe", "count": 1}]},
    ]
    assert [m["rule"] for m in res["recent"]] == ["web-dotenv-probe", "sshd-failed-password"]
    assert res["recent"][0]["lines"] == DOTENV and res["recent"][0]["agent"] == "web2"
    assert res["recent"][1]["count"] == "3"


def test_read_results_on_empty_redis(redis_client: redis.Redis) -> None:
    res = read_results(redis_client, Keys(), limit=5)
    assert res == {"totals": dict.fromkeys(res["totals"], 0), "signatures": [], "agents": [],
                   "recent": [], "alerts": []}


def test_show_text(populated: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert show(populated, as_json=False, limit=3) == 0
    out = capsys.readouterr().out
    assert "Totals: lines 7  batches 1  chunks 2  matches 4" in out
    lines = out.splitlines()
    sig = lines.index("Signatures")
    assert lines[sig + 1].split() == ["COUNT", "SEVERITY", "RULE", "TITLE"]
    assert lines[sig + 2].split()[:3] == ["3", "medium", "sshd-failed-password"]
    assert "SSH failed password" in lines[sig + 2]
    assert "web1" in out and "sshd-failed-password (3)" in out
    assert "Latest 2 match groups" in out and "2023-11-14 22:14:20" in out


def test_show_json(populated: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert show(populated, as_json=True, limit=10) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["totals"]["matches"] == 4 and len(res["recent"]) == 2


def test_results_cli_json(populated: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "REDIS_URL": populated.redis_url}
    proc = subprocess.run(logsig_cmd("results", "--json", "--limit", "1"), env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["signatures"][0]["id"] == "sshd-failed-password" and len(res["recent"]) == 1


def test_show_reports_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    assert show(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")) == 1

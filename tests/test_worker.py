"""End to end: a real ``logsig worker`` subprocess consuming tasks from a real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.publisher import BatchSender
from logsig.batch import Batch, Chunk, Segment
from logsig.keys import Keys
from logsig.settings import Settings
from tests.conftest import logsig_cmd

pytestmark = pytest.mark.slow
KEYS = Keys()
SSH_FAIL = "sshd[7]: Failed password for root from 203.0.113.9 port 22 ssh2"
LOG4J = '203.0.113.5 - - [11/Dec/2021:01:02:03 +0000] "GET / HTTP/1.1" 200 1 "-" "${jndi:ldap://x}"'


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RULES_PATH", "KEY_PREFIX")}
    return {**env, "REDIS_URL": redis_url, "LOG_LEVEL": "INFO", **extra}


@pytest.fixture
def worker(redis_server, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
           tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    # Output goes to a file: a pipe nobody reads could fill up and block the worker.
    with open(tmp_path / "worker.log", "w+") as log:
        proc = subprocess.Popen(logsig_cmd("worker", "--concurrency", "2"), cwd=tmp_path,
                                env=_env(redis_server.url), stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        yield proc
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _batch(n: int, lines: list[str]) -> Batch:
    return Batch("t", [Chunk(f"w-{n}-{c}", [Segment.of(f"host{c}", "app.log", 1.0, lines)])
                       for c in range(2)])


def _wait_for(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_worker_counts_batches_exactly_once(  # type: ignore[no-untyped-def]
        worker: subprocess.Popen[str], redis_server, redis_client: redis.Redis,
        tmp_path: Path) -> None:
    sender = BatchSender(Settings(redis_url=redis_server.url))
    lines = [SSH_FAIL, "plain line", LOG4J, SSH_FAIL]
    batches = [_batch(n, lines) for n in range(10)]
    try:
        for b in batches + batches[:3]:  # three redeliveries
            sender.send(b.pack())
    finally:
        sender.close()
    # SSH_FAIL matches sshd-failed-password and the threshold rule sshd-brute-force.
    expected = {"lines": "80", "chunks": "20", "batches": "10", "matches": "100",
                "duplicates": "24"}

    def done() -> bool:
        totals = redis_client.hgetall(KEYS.totals)
        return all(totals.get(k) == v for k, v in expected.items())

    assert _wait_for(done), redis_client.hgetall(KEYS.totals)
    assert redis_client.hgetall(KEYS.signatures) == {"sshd-failed-password": "40",
                                                     "sshd-brute-force": "40",
                                                     "web-log4shell": "20"}
    # 40 failures from one address within a second: one crossing, one alert, across processes.
    assert redis_client.hget(KEYS.totals, "alerts") == "1"
    # Its window keeps the rule's count (5) of latest match times.
    assert len(redis_client.hget(KEYS.windows("sshd-brute-force"), "203.0.113.9").split()) == 5
    assert redis_client.hgetall(KEYS.agents) == {"host0": "40", "host1": "40"}
    assert redis_client.hlen(KEYS.rules) >= 80
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    out = (tmp_path / "worker.log").read_text()
    assert worker.returncode == 0, out
    assert "Warm shutdown" in out


def test_worker_with_invalid_rules_pack_exits_2(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "broken.yml").write_text(
        "- id: broken-rule\n  title: x\n  severity: high\n  patterns: ['(oops']\n"
        "  examples: {match: [a], nomatch: [b]}\n")
    proc = subprocess.run(logsig_cmd("worker", "--concurrency", "1"), cwd=tmp_path,
                          env=_env(redis_server.url, RULES_PATH=str(packs)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "broken.yml" in proc.stderr and "broken-rule" in proc.stderr
    assert "bad regex" in proc.stderr

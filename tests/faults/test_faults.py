"""Fault injection: every part of the pipeline is killed mid-stream; totals stay exact.

Each test streams 120,000 lines with known signature hits from two agents following growing
files, breaks one part while lines flow, lets it recover, and asserts the final counts in
Redis: every line counted once (0 lost, 0 duplicated), every signature total exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import KEYS, RESULTS, Cluster, Vocabulary, Writer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LINES_PER_AGENT = 60_000
RATE = 12_000  # lines/s per agent: about five seconds of writing, faults land mid-stream
VOCABULARY = Vocabulary()

Inject = Callable[[Cluster, list[Writer]], None]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start_redis()
    c.start_worker()
    c.start_gateway()
    yield c
    c.stop_all()


def stream_with_fault(cluster: Cluster, fault: str, inject: Inject) -> None:
    writers = [Writer(cluster.workdir / f"app-{n}.log", VOCABULARY, LINES_PER_AGENT, RATE)
               for n in (1, 2)]
    for n, writer in enumerate(writers, 1):
        writer.start()
        cluster.start_agent(n, writer.path)
    while writers[0].written < LINES_PER_AGENT // 3:
        time.sleep(0.02)
    inject(cluster, writers)
    for writer in writers:
        writer.join(60)
    sent = sum(w.written for w in writers)
    deadline = time.monotonic() + 120
    while cluster.counted() < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # a duplicate would land now
    counted = cluster.counted()
    totals = cluster.counts(KEYS.totals)
    RESULTS.append({"fault": fault, "sent": sent, "counted": counted,
                    "lost": max(0, sent - counted), "duplicated": max(0, counted - sent),
                    "redeliveries absorbed": totals["duplicates"]})
    assert counted == sent, f"{fault}: sent {sent}, counted {counted}"
    assert cluster.counts(KEYS.agents) == {"agent-1": LINES_PER_AGENT, "agent-2": LINES_PER_AGENT}
    expected = VOCABULARY.expected(LINES_PER_AGENT)
    assert cluster.counts(KEYS.signatures) == expected + expected
    assert cluster.counts(KEYS.agent("agent-1")) == expected


def restart_after(kill: Callable[[Cluster], None], start: Callable[[Cluster], None],
                  down: float = 1.0) -> Inject:
    def inject(cluster: Cluster, _writers: list[Writer]) -> None:
        kill(cluster)
        time.sleep(down)
        start(cluster)
    return inject


def test_gateway_kill9_and_restart(cluster: Cluster) -> None:
    stream_with_fault(cluster, "kill -9 gateway, restart",
                      restart_after(lambda c: c.kill("gateway"), Cluster.start_gateway))


def test_worker_child_kill9_mid_batch(cluster: Cluster) -> None:
    def inject(c: Cluster, _writers: list[Writer]) -> None:
        for _ in range(3):
            c.kill_worker_child()
            time.sleep(0.4)
    stream_with_fault(cluster, "kill -9 worker child (x3)", inject)


def test_whole_worker_kill9_and_restart(cluster: Cluster) -> None:
    stream_with_fault(cluster, "kill -9 whole worker, restart",
                      restart_after(Cluster.kill_worker_entirely, Cluster.start_worker))


def test_redis_kill9_and_restart_with_aof(cluster: Cluster) -> None:
    stream_with_fault(cluster, "kill -9 redis (AOF), restart",
                      restart_after(Cluster.kill_redis, Cluster.start_redis))


def test_agent_kill9_and_restart_from_registry(cluster: Cluster) -> None:
    def inject(c: Cluster, writers: list[Writer]) -> None:
        for _ in range(2):
            c.kill("agent-1")
            time.sleep(0.5)
            c.start_agent(1, writers[0].path)
            time.sleep(0.8)
    stream_with_fault(cluster, "kill -9 agent (x2), restart", inject)


def test_rotation_by_rename_mid_stream(cluster: Cluster) -> None:
    stream_with_fault(cluster, "rotate: rename + new file",
                      lambda _c, writers: writers[0].rotate_by_rename())


def test_rotation_by_rename_with_an_app_slow_to_reopen(cluster: Cluster) -> None:
    # Lines still written to the renamed file for 1 s: read thanks to ROTATE_WAIT (5 s).
    stream_with_fault(cluster, "rotate: rename, app reopens 1 s late",
                      lambda _c, writers: writers[0].rotate_by_rename(late=1.0))


def test_copytruncate_mid_stream(cluster: Cluster) -> None:
    def caught_up(written: int) -> bool:
        return cluster.counts(KEYS.agents)["agent-1"] >= written
    def noticed() -> bool:
        return "was truncated" in cluster.procs["agent-1"].output()

    stream_with_fault(cluster, "rotate: copytruncate",
                      lambda _c, writers: writers[0].copytruncate(caught_up, noticed))

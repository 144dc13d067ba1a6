"""Exactly once through crashes: ``kill -9`` of the agent, and of the gateway.

What the workers need is that a line delivered more than once always comes under the same
chunk id with the same content, since they count each chunk id once. These tests check
exactly that on the wire, with the in-test Forward server of ``test_agent_e2e``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from agents.agent import Agent
from agents.registry import Registry
from agents.runner import build_sources
from tests.test_agent_e2e import (
    Gateway,
    agent_env,
    message_lines,
    settings_for,
    spawn_agent,
    write_log,
)

TOTAL = 12_000


def assert_exactly_once_per_chunk(gw: Gateway, expected: list[str]) -> None:
    """Every expected line arrived; a repeated line only ever came in one chunk id, and
    every delivery of a chunk id carried the same events."""
    chunks_of: dict[str, set[str]] = defaultdict(set)
    for chunk, deliveries in gw.deliveries().items():
        first = deliveries[0].events
        assert all(d.events == first for d in deliveries[1:]), f"chunk {chunk} changed"
        for line in message_lines(deliveries[0]):
            chunks_of[line].add(chunk)
    assert set(chunks_of) == set(expected)
    twice = {line: ids for line, ids in chunks_of.items() if len(ids) > 1}
    assert not twice, f"{len(twice)} line(s) sent under two chunk ids, e.g. {next(iter(twice))}"


def append_lines(path: Path, count: int, seconds: float, stop: threading.Event) -> None:
    """Append ``count`` numbered lines over about ``seconds``, a few per write."""
    per_write = 20
    pause = seconds / (count / per_write)
    for start in range(0, count, per_write):
        if stop.is_set():
            return
        with open(path, "ab") as fh:
            fh.write(b"".join(b"line %06d\n" % i for i in range(start, start + per_write)))
        time.sleep(pause)


def test_kill_9_of_the_agent_at_random_moments(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    expected = [f"line {i:06d}" for i in range(TOTAL)]
    rng = random.Random(1234)
    stop = threading.Event()
    writer = threading.Thread(target=append_lines, args=(log, TOTAL, 5.0, stop), daemon=True)

    async def main() -> Gateway:
        async with Gateway(ack_delay=0.3) as gw:  # acks in flight when the kill lands
            env = agent_env(gw.port, tmp_path, BATCH_SIZE="200", AGENT_MAX_INFLIGHT="8")
            writer.start()
            for _ in range(6):  # bounded: 6 kills, ~1 s each
                proc = await spawn_agent(tmp_path, env, str(log))
                await asyncio.sleep(rng.uniform(0.5, 1.3))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            await asyncio.to_thread(writer.join, 10)
            connections = gw.connections
            proc = await spawn_agent(tmp_path, env, str(log))
            try:
                async with asyncio.timeout(10):  # connected: its signal handlers are set
                    while gw.connections == connections:
                        await asyncio.sleep(0.02)
                await gw.wait_lines(TOTAL, timeout=10)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 8) == 0
            return gw

    try:
        gw = asyncio.run(main())
    finally:
        stop.set()
    assert_exactly_once_per_chunk(gw, expected)
    output = (tmp_path / "agent.log").read_text()
    assert output.count("connected to gateway") >= 7
    assert "resending chunk" in output  # some kill did leave chunks unacked
    assert "can no longer be replayed" not in output


def test_gateway_killed_with_acks_withheld_gets_the_same_chunks_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "app.log"
    expected = [f"line {i}" for i in range(1500)]
    write_log(log, expected)

    async def main() -> tuple[Gateway, Gateway]:
        async with Gateway(lambda conn, n: "hold") as dead:
            settings = settings_for(dead, tmp_path, ack_timeout=30.0, agent_max_inflight=4,
                                    retry_initial=0.05, retry_max=0.4)
            registry = Registry.load(settings.registry_path)
            agent = Agent(settings, build_sources(settings, [str(log)], registry), registry)
            task = asyncio.create_task(agent.run())
            await dead.wait_lines(400)  # the window is full, nothing acked
            await dead.kill()
            await asyncio.sleep(1.5)  # refused again and again, backing off
            async with Gateway(port=dead.port) as alive:
                await alive.wait_lines(1500)
                agent.stop()
                assert await asyncio.wait_for(task, 5) == 0
        return dead, alive

    with caplog.at_level(logging.INFO, logger="agents.client"):
        dead, alive = asyncio.run(main())
    held = dead.deliveries()
    assert len(held) == 4
    again = alive.deliveries()
    for chunk, deliveries in held.items():  # the same ids, the same lines
        assert again[chunk][0].events == deliveries[0].events
    assert alive.lines()[:400] == expected[:400]
    assert_exactly_once_per_chunk(alive, expected)
    refused = caplog.text.count("cannot connect to gateway")
    assert 3 <= refused <= 12  # retried, with delays growing to RETRY_MAX, not in a hot loop

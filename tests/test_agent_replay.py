"""Write-ahead intents: a chunk left unacked is rebuilt from its file and resent as it was."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from agents.agent import Agent
from agents.encoder import FrameEncoder
from agents.intent import Intent
from agents.registry import Registry
from agents.replay import ReplayDeferred, rebuild
from agents.runner import build_sources
from tests.agent_support import out_of_descriptors
from tests.test_agent_e2e import Gateway, settings_for, write_log
from tests.test_tail import Clock, Collect, tail

ENCODER = FrameEncoder("logsig", "host")


def intent_of_file(log: Path, clock: Clock | None = None) -> Intent:
    """Read ``log`` as the tailer does (its unterminated end as a cut line), as one intent."""
    src, sink, clock = tail(log, partial=1.0), Collect(), clock or Clock()
    asyncio.run(src.poll(sink, clock))
    clock.now += 5
    asyncio.run(src.poll(sink, clock))
    return Intent.of("c-1", sink.blocks, [ENCODER.entries(b) for b in sink.blocks])


def test_rebuild_gives_back_the_same_entries_after_a_rename(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\r\nbad \xff utf8\n\ncut here")
    intent = intent_of_file(log)
    assert [s.cut for s in intent.segments] == [False, True]
    log.rename(tmp_path / "app.log.1")  # rotated: found again by identity
    log.write_bytes(b"other\n")
    kept, blocks, entries = rebuild(intent, ENCODER)
    assert kept == intent
    assert [line for b in blocks for line in b.lines] == ["a", "bad \ufffd utf8", "", "cut here"]
    assert [b.source for b in blocks] == [str(log), str(log)]  # the name it was sent under
    assert [ENCODER.entries(b) for b in blocks] == entries


@pytest.mark.parametrize("encoding", ["lean_entries", "legacy_entries"])
def test_a_chunk_left_by_an_earlier_agent_is_still_replayed(tmp_path: Path,
                                                            encoding: str) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"first\nsecond\n")
    src, sink = tail(log), Collect()
    asyncio.run(src.poll(sink, Clock()))
    pack = getattr(ENCODER, encoding)
    old = Intent.of("c-old", sink.blocks, [pack(b) for b in sink.blocks])
    kept, blocks, entries = rebuild(old, ENCODER)
    assert kept == old
    assert entries == [ENCODER.entries(b) for b in blocks]  # resent in today's encoding
    assert [line for b in blocks for line in b.lines] == ["first", "second"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "rewrite"])
def test_lines_that_cannot_be_rebuilt_are_named_and_counted(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "app.log"
    other = tmp_path / "other.log"
    log.write_bytes(b"one\ntwo\n")
    other.write_bytes(b"three\n")
    first, second = intent_of_file(log), intent_of_file(other)
    intent = Intent("c-9", first.segments + second.segments)
    if damage == "truncate":
        os.truncate(log, 4)
    elif damage == "delete":
        log.unlink()
    else:
        log.write_bytes(b"ONE\nTWO\n")  # same size, same file, other bytes
    with caplog.at_level(logging.WARNING):
        kept, blocks, _ = rebuild(intent, ENCODER)
    assert kept.segments == second.segments  # what is left still goes out under c-9
    assert [b.lines for b in blocks] == [["three"]]
    assert f"chunk c-9: 2 line(s) of {log}" in caplog.text


def test_a_restart_resends_unacked_chunks_first_under_their_ids(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, [f"line {i}" for i in range(250)])

    async def session(gw: Gateway, *, wait: int) -> int:
        settings = settings_for(gw, tmp_path, shutdown_timeout=0.3)
        registry = Registry.load(settings.registry_path)
        agent = Agent(settings, build_sources(settings, [str(log)], registry), registry)
        task = asyncio.create_task(agent.run())
        await gw.wait_lines(wait)
        agent.stop()
        return await asyncio.wait_for(task, 5)

    async def main() -> tuple[Gateway, Gateway]:
        async with Gateway(lambda conn, n: "ack" if n == 0 else "hold") as first:
            assert await session(first, wait=250) == 1  # two chunks never acked
        write_log(log, [f"more {i}" for i in range(50)], mode="ab")
        async with Gateway() as second:
            assert await session(second, wait=200) == 0
        return first, second

    first, second = asyncio.run(main())
    held = [m for m in first.received[1:]]
    assert [m.chunk for m in second.received[:2]] == [m.chunk for m in held]
    assert [m.events for m in second.received[:2]] == [m.events for m in held]  # identical
    assert first.lines()[:100] + second.lines() == (
        [f"line {i}" for i in range(250)] + [f"more {i}" for i in range(50)])
    assert Registry.load(str(tmp_path / "registry.json")).pending() == []


@pytest.mark.parametrize("renamed", [False, True])
def test_a_file_that_cannot_be_read_now_defers_the_whole_chunk(tmp_path: Path,
                                                               renamed: bool) -> None:
    log, other = tmp_path / "app.log", tmp_path / "other.log"
    log.write_bytes(b"one\ntwo\n")
    other.write_bytes(b"three\n")
    intent = Intent("c-7", intent_of_file(log).segments + intent_of_file(other).segments)
    if renamed:  # found again by searching the directory, which needs a descriptor too
        log.rename(tmp_path / "app.log.1")
    with out_of_descriptors(), pytest.raises(ReplayDeferred) as failed:
        rebuild(intent, ENCODER)  # before: "the file is gone" (renamed) or an error, lost
    assert f"{log} (bytes 0-8): [Errno 24] Too many open files" in str(failed.value)
    kept, blocks, _ = rebuild(intent, ENCODER)  # descriptors again: nothing was lost
    assert kept == intent
    assert [b.lines for b in blocks] == [["one", "two"], ["three"]]


def test_unacked_chunks_that_cannot_be_read_at_start_go_out_once_the_disk_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("agents.agent.REPLAY_RETRY_FIRST", 0.05)
    log, other = tmp_path / "app.log", tmp_path / "other.log"
    write_log(log, [f"line {i}" for i in range(250)])
    broken = False
    real_open = os.open

    def flaky_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if broken and os.fspath(path) == str(log):  # as an I/O error of the disk would
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", flaky_open)

    async def main() -> tuple[Gateway, Gateway]:
        nonlocal broken
        async with Gateway(lambda conn, n: "hold") as first:
            settings = settings_for(first, tmp_path, shutdown_timeout=0.3)
            registry = Registry.load(settings.registry_path)
            agent = Agent(settings, build_sources(settings, [str(log)], registry), registry)
            task = asyncio.create_task(agent.run())
            await first.wait_lines(250)
            agent.stop()
            assert await asyncio.wait_for(task, 5) == 1  # nothing acked: all pending
        broken = True
        write_log(other, [f"other {i}" for i in range(30)])
        async with Gateway() as second:
            settings = settings_for(second, tmp_path)
            registry = Registry.load(settings.registry_path)
            agent = Agent(settings, build_sources(settings, [str(log), str(other)], registry),
                          registry)
            task = asyncio.create_task(agent.run())
            await second.wait_lines(30)  # new lines flow while the old chunks wait
            await asyncio.sleep(0.3)  # several failed tries
            assert second.lines() == [f"other {i}" for i in range(30)]
            broken = False
            await second.wait_lines(280)
            agent.stop()
            assert await asyncio.wait_for(task, 5) == 0
        return first, second

    with caplog.at_level(logging.WARNING):
        first, second = asyncio.run(main())
    assert "cannot be read back now" in caplog.text and "Input/output error" in caplog.text
    assert list(second.deliveries())[1:] == list(first.deliveries())  # under their ids
    assert second.lines()[30:] == [f"line {i}" for i in range(250)]
    assert Registry.load(str(tmp_path / "registry.json")).pending() == []

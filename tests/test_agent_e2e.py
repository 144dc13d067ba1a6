"""The agent end to end against a small Forward server on a free 127.0.0.1 port.

The server is built on the shared codec (``FrameDecoder`` + ``encode_ack``) and can hold
acks or drop connections, so resends are observed on the wire. Some tests run the agent
as ``python -m logsig agent`` configured by environment variables, others in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agents.agent import QUEUE_BLOCKS, Agent
from agents.generator import MAX_BLOCK, GeneratorSource, generate_lines
from agents.registry import Registry
from agents.runner import build_sources, run
from logsig.errors import SettingsError
from logsig.forward import ForwardMessage, FrameDecoder, encode_ack
from logsig.settings import Settings

T = TypeVar("T")
Policy = Callable[[int, int], str]
"""(connection number, message number on that connection) -> "ack" | "hold" | "drop"."""


def ack_all(conn: int, n: int) -> str:
    return "ack"


class Gateway:
    """Records every Forward message it receives and answers according to ``policy``."""

    def __init__(self, policy: Policy = ack_all, *, port: int = 0,
                 ack_delay: float = 0.0) -> None:
        self.policy = policy
        self.port = port
        self.ack_delay = ack_delay
        """Acks go out after a random delay up to this long (so some are in flight)."""
        self.received: list[ForwardMessage] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Gateway:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def kill(self) -> None:
        """Vanish like a killed process: connections reset, nothing acked any more."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn, n = self.connections, 0
        self.connections += 1
        self._writers.append(writer)
        decoder = FrameDecoder(16 << 20)
        try:
            while data := await reader.read(1 << 16):
                for msg in decoder.feed(data):
                    self.received.append(msg)
                    action = self.policy(conn, n)
                    n += 1
                    if action == "drop":
                        writer.transport.abort()
                        return
                    if action == "ack" and msg.chunk:
                        self._ack(writer, msg.chunk)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _ack(self, writer: asyncio.StreamWriter, chunk: str) -> None:
        if not self.ack_delay:
            writer.write(encode_ack(chunk))
            return
        def late() -> None:
            if not writer.is_closing():
                writer.write(encode_ack(chunk))

        asyncio.get_running_loop().call_later(random.uniform(0, self.ack_delay), late)

    def deliveries(self) -> dict[str, list[ForwardMessage]]:
        """Every delivery of each chunk id, in arrival order."""
        out: dict[str, list[ForwardMessage]] = {}
        for msg in self.received:
            assert msg.chunk, "every batch must ask for an ack"
            out.setdefault(msg.chunk, []).append(msg)
        return out

    def lines(self) -> list[str]:
        """Lines of the first delivery of each chunk, in the order chunks first arrived."""
        return [line for msgs in self.deliveries().values() for line in message_lines(msgs[0])]

    async def wait_lines(self, n: int, timeout: float = 8.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.lines()) < n:
                await asyncio.sleep(0.02)


def message_lines(msg: ForwardMessage) -> list[str]:
    """The lines a request carries: an agent's block event holds several (``lines``)."""
    counts = msg.lines or [1] * len(msg.entries)
    return [line for (_, rec), n in zip(msg.entries, counts, strict=True)
            for line in (rec["message"].split("\n") if n > 1 else [rec["message"]])]


def settings_for(gw: Gateway, tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        gateway_port=gw.port, batch_size=100, timeout=0.1, ack_timeout=2.0,
        registry_path=str(tmp_path / "registry.json"), agent_name="test-agent",
        poll_interval=0.02, partial_line_timeout=0.3, shutdown_timeout=3.0,
        retry_initial=0.05, retry_max=0.2)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def agent_env(gw_port: int, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, GATEWAY_PORT=str(gw_port), BATCH_SIZE="100", TIMEOUT="0.1",
               REGISTRY_PATH=str(tmp_path / "registry.json"), AGENT_NAME="sub-agent",
               POLL_INTERVAL="0.02", PARTIAL_LINE_TIMEOUT="0.3", RETRY_INITIAL="0.05",
               RETRY_MAX="0.2", SHUTDOWN_TIMEOUT="3", LOG_LEVEL="INFO")
    env.update(extra)
    return env


async def spawn_agent(tmp_path: Path, env: dict[str, str], *args: str,
                      stdin: int | None = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "logsig", "agent", *args, env=env, cwd=tmp_path,
            stdin=stdin, stdout=log, stderr=log)
    finally:
        log.close()


def write_log(path: Path, lines: list[str], *, crlf: bool = False, last_newline: bool = True,
              mode: str = "wb") -> None:
    end = "\r\n" if crlf else "\n"
    text = end.join(lines) + (end if last_newline else "")
    with open(path, mode) as fh:
        fh.write(text.encode())


def test_subprocess_agent_follows_a_file_exactly_once_in_order(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    first = generate_lines(3000, seed=11)
    write_log(log, first, crlf=True, last_newline=False)  # like the loghub files

    async def main() -> None:
        async with Gateway() as gw:
            proc = await spawn_agent(tmp_path, agent_env(gw.port, tmp_path), str(log))
            await gw.wait_lines(3000)
            more = [f"appended {i}" for i in range(250)]
            # The unterminated last line went out after PARTIAL_LINE_TIMEOUT; the newline
            # that ends it comes late and is swallowed (no empty line).
            write_log(log, ["", *more], crlf=True, mode="ab")
            await gw.wait_lines(3250)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 8) == 0
            assert gw.lines() == [*first, *more]
            assert len(gw.deliveries()) == len(gw.received)  # nothing sent twice
            for msg in gw.received:
                assert msg.mode == "packed" and msg.line_count <= 100
                assert msg.host == "sub-agent" and {s for s, _ in msg.sources} == {str(log)}
                assert all(set(rec) == {"message"} for _, rec in msg.events)

    asyncio.run(main())
    registry = json.loads((tmp_path / "registry.json").read_text())
    assert [(f["path"], f["offset"]) for f in registry["files"]] == [(str(log),
                                                                       log.stat().st_size)]
    assert registry["intents"] == []  # every chunk acked
    assert "connected to gateway" in (tmp_path / "agent.log").read_text()


def run_on(loop_kind: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the stdlib loop or on uvloop (what the CLI uses when installed)."""
    if loop_kind == "uvloop":
        return pytest.importorskip("uvloop").run(coro)  # type: ignore[no-any-return]
    return asyncio.run(coro)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_withheld_ack_and_dropped_connection_resend_the_same_chunk(tmp_path: Path,
                                                                   loop_kind: str) -> None:
    def policy(conn: int, n: int) -> str:
        if conn == 0:
            return "hold" if n == 0 else "ack"  # the first chunk is never acked here
        if conn == 1:
            return "drop"  # the connection dies before the resent chunk is acked
        return "ack"

    async def main() -> tuple[Gateway, int]:
        async with Gateway(policy) as gw:
            settings = settings_for(gw, tmp_path, ack_timeout=0.3, batch_size=50,
                                    agent_max_inflight=3)
            agent = Agent(settings, [GeneratorSource(rate=2000, count=1500, seed=2)],
                          Registry(settings.registry_path))
            rc = await asyncio.wait_for(agent.run(), 9)
            return gw, rc

    gw, rc = run_on(loop_kind, main())
    assert rc == 0
    assert gw.lines() == generate_lines(1500, seed=2)  # nothing lost, order kept
    assert gw.connections >= 3
    assert len(gw.deliveries()[gw.received[0].chunk or ""]) >= 3  # held, dropped, acked
    deliveries = gw.deliveries()
    resent = {cid: msgs for cid, msgs in deliveries.items() if len(msgs) > 1}
    assert resent, "the held and the dropped chunk must have been resent"
    for msgs in resent.values():  # a duplicate is always the same chunk, byte for byte
        assert all(m.events == msgs[0].events for m in msgs)
    assert sum(len(m) for m in deliveries.values()) == len(gw.received)


def test_restart_resumes_from_the_registry(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, [f"first {i}" for i in range(500)])

    async def session(expected: int, linger: float = 0.0) -> list[str]:
        async with Gateway() as gw:
            settings = settings_for(gw, tmp_path)
            registry = Registry.load(settings.registry_path)
            sources = build_sources(settings, [str(log)], registry)
            agent = Agent(settings, sources, registry)
            task = asyncio.create_task(agent.run())
            await gw.wait_lines(expected)
            await asyncio.sleep(linger)
            agent.stop()
            assert await asyncio.wait_for(task, 5) == 0
            return gw.lines()

    assert asyncio.run(session(500)) == [f"first {i}" for i in range(500)]
    write_log(log, [f"second {i}" for i in range(300)] + ["tail"], last_newline=False,
              mode="ab")
    # the unterminated "tail" is not due yet (0.3 s), so the stop emits it
    assert asyncio.run(session(300)) == [f"second {i}" for i in range(300)] + ["tail"]
    assert asyncio.run(session(0, linger=0.3)) == []  # nothing new: nothing re-read
    os.unlink(log)
    write_log(log, ["new file"])  # a different file under the same name: from the start
    assert asyncio.run(session(1)) == ["new file"]


def test_stdin_agent_ships_until_eof_and_exits_zero(tmp_path: Path) -> None:
    lines = generate_lines(1000, seed=4)

    async def main() -> None:
        async with Gateway() as gw:
            env = agent_env(gw.port, tmp_path)
            proc = await spawn_agent(tmp_path, env, "--stdin", stdin=asyncio.subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(("\r\n".join(lines)).encode())  # no final newline
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), 8) == 0
            assert gw.lines() == lines
            assert {s for m in gw.received for s, _ in m.sources} == {"stdin"}

    asyncio.run(main())
    assert not (tmp_path / "registry.json").exists()  # nothing to remember for stdin


def test_generator_agent_with_count_exits_zero(tmp_path: Path) -> None:
    async def main() -> None:
        async with Gateway() as gw:
            proc = await spawn_agent(tmp_path, agent_env(gw.port, tmp_path),
                                     "--generate", "20000", "--count", "2500", "--seed", "8")
            assert await asyncio.wait_for(proc.wait(), 8) == 0
            assert gw.lines() == generate_lines(2500, seed=8)

    asyncio.run(main())


def test_unacked_lines_at_shutdown_exit_one_and_are_counted(tmp_path: Path) -> None:
    async def main() -> None:
        async with Gateway(lambda conn, n: "hold") as gw:
            env = agent_env(gw.port, tmp_path, SHUTDOWN_TIMEOUT="0.3", ACK_TIMEOUT="30")
            proc = await spawn_agent(tmp_path, env, "--stdin", stdin=asyncio.subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(b"".join(b"line %d\n" % i for i in range(150)))
            await proc.stdin.drain()
            await gw.wait_lines(150)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 8) == 1
            proc.stdin.close()

    asyncio.run(main())
    assert "150 line(s) read but not acked" in (tmp_path / "agent.log").read_text()


def test_backpressure_stops_reading_when_nothing_is_acked(tmp_path: Path) -> None:
    async def main() -> None:
        async with Gateway(lambda conn, n: "hold") as gw:
            settings = settings_for(gw, tmp_path, ack_timeout=30.0, shutdown_timeout=0.2,
                                    agent_max_inflight=2)
            agent = Agent(settings, [GeneratorSource(rate=None, seed=1)],
                          Registry(settings.registry_path))
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(0.6)
            stalled_at = agent.lines_read
            await asyncio.sleep(0.3)
            assert agent.lines_read == stalled_at  # the source waits instead of reading on
            # queue + a block in the shipper's hand + one in the source's, window + open batch
            assert stalled_at <= (QUEUE_BLOCKS + 2) * MAX_BLOCK + 3 * settings.batch_size
            assert len(gw.received) == 2
            agent.stop()
            assert await asyncio.wait_for(task, 5) == 1

    asyncio.run(main())


def test_no_source_is_a_settings_error(tmp_path: Path) -> None:
    settings = Settings(registry_path=str(tmp_path / "r.json"))
    with pytest.raises(SettingsError, match="nothing to read"):
        run(settings, [])
    with pytest.raises(SettingsError, match="--count"):
        run(settings, [], use_stdin=True, count=5)


def test_open_batch_goes_out_after_timeout_and_big_frames_are_split(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, [f"{i:04d} " + "x" * 200 for i in range(40)])

    async def main() -> tuple[Gateway, float]:
        async with Gateway() as gw:
            settings = settings_for(gw, tmp_path, batch_size=1000, timeout=0.4,
                                    max_frame_bytes=3000)
            registry = Registry(settings.registry_path)
            agent = Agent(settings, build_sources(settings, [str(log)], registry), registry)
            loop = asyncio.get_running_loop()
            start = loop.time()
            task = asyncio.create_task(agent.run())
            await gw.wait_lines(40)
            elapsed = loop.time() - start
            agent.stop()
            assert await asyncio.wait_for(task, 5) == 0
            return gw, elapsed

    gw, elapsed = asyncio.run(main())
    assert 0.4 <= elapsed < 1.5  # 40 lines never fill a batch of 1000: the timeout sends them
    assert gw.lines() == [f"{i:04d} " + "x" * 200 for i in range(40)]
    assert len(gw.received) >= 4  # ~9 kB of lines do not fit one 3000-byte frame
    assert all(sum(len(r["message"]) for _, r in m.events) < 3000 for m in gw.received)

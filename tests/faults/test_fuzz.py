"""Hostile input: 10,000 random and mutated Forward frames against a live gateway.

Each frame goes over its own connection. Our own decoder is the oracle: a frame it refuses
must make the gateway close the connection and log why; an incomplete one must be reported
as cut off mid-frame; a valid one is acknowledged. Meanwhile a real agent ships its lines
through the same gateway to real workers and must lose none of them, and the gateway's
memory must stay bounded.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logsig import forward
from logsig.errors import ProtocolError
from logsig.keys import Keys
from tests.conftest import (
    Proc,
    RedisServer,
    free_port,
    logsig_cmd,
    rss_kib,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = 10_000
MAX_FRAME = 64 * 1024
GOOD_LINES = 20_000
KEYS = Keys("logsig")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                    st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
records = st.dictionaries(st.sampled_from(["message", "log", "source", "x", "host"]),
                          st.one_of(st.text(max_size=40), scalars), max_size=4)
chunks = st.one_of(st.none(), st.text(min_size=1, max_size=12))
times = st.one_of(st.integers(0, 2**32 - 1), st.floats(0, 2**31, allow_nan=False))


@st.composite
def valid_frames(draw: st.DrawFn) -> bytes:
    tag, chunk = draw(st.text(max_size=10)), draw(chunks)
    events = draw(st.lists(st.tuples(times, records), max_size=5))
    mode = draw(st.sampled_from(["message", "forward", "packed", "compressed"]))
    if mode == "message" or not events:
        ts, record = events[0] if events else (0, {})
        return forward.encode_message(tag, ts, record, chunk)
    if mode == "forward":
        return forward.encode_forward(tag, events, chunk)
    entries = b"".join(forward.pack_event(ts, rec) for ts, rec in events)
    return forward.encode_packed_forward(tag, entries, len(events), chunk, mode == "compressed")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_frames()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def wrong_shapes() -> st.SearchStrategy[bytes]:
    shaped = st.lists(values, min_size=0, max_size=5).map(lambda v: msgpack.packb(v))
    nested = st.integers(100, 3000).map(lambda depth: b"\x91" * depth + b"\xc0")
    oversized = st.integers(MAX_FRAME, 3 * MAX_FRAME).map(
        lambda n: forward.encode_message("big", 1, {"log": "x" * n}, "big"))
    return st.one_of(shaped, nested, oversized, st.binary(min_size=1, max_size=64))


frames = st.one_of(valid_frames(), mutated(), wrong_shapes())


def oracle(data: bytes) -> tuple[str, list[str]]:
    """What the gateway must do with ``data`` (and which chunks it must ack): our decoder says."""
    decoder = forward.FrameDecoder(MAX_FRAME)
    try:
        messages = decoder.feed(data)
    except ProtocolError:
        return "refused", []
    if decoder.pending_bytes:
        return "cut off", []
    return "accepted", [m.chunk for m in messages if m.chunk]


def exchange(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send one frame, half-close, and read what comes back until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # closed while we were still sending: an oversized frame
        replies = b""
        try:
            while chunk := sock.recv(65536):
                replies += chunk
        except ConnectionResetError:
            pass
        return replies





@pytest.fixture
def services(redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
             ) -> Iterator[tuple[int, Proc, dict[str, str]]]:
    port = free_port()
    env = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port), "HEALTH_PORT": "0",
           "ANALYZE_PORT": "0", "MAX_FRAME_BYTES": str(MAX_FRAME), "BATCH_SIZE": "500",
           "TIMEOUT": "0.2",
           "QUEUE": "logsig-fuzz"}
    worker = Proc(logsig_cmd("worker", "--concurrency", "2"), env, tmp_path / "worker.log")
    gateway = Proc(logsig_cmd("gateway"), env, tmp_path / "gateway.log")
    wait_for_port(port, proc=gateway.popen)
    # Acks are end to end (a worker must record the chunk): wait until the path works.
    probe = forward.encode_message("probe", 1, {"log": "ready?"}, "probe-1")
    assert _unpack(exchange(port, probe, timeout=120)) == [{"ack": "probe-1"}]
    yield port, gateway, env
    gateway.stop()
    worker.stop()


def test_fuzzed_frames_close_only_their_connection(
    services: tuple[int, Proc, dict[str, str]], redis_client: redis.Redis, tmp_path: Path
) -> None:
    port, gateway, env = services
    agent = Proc(logsig_cmd("agent", "--generate", "2000", "--count", str(GOOD_LINES),
                            "--name", "good-agent"), env, tmp_path / "agent.log")
    rss_before = rss_kib(gateway.popen.pid)
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def throw(frame: bytes) -> None:
        expected, chunk_ids = oracle(frame)
        outcomes[expected] += 1
        replies = exchange(port, frame)
        if expected == "accepted":
            assert sorted(r["ack"] for r in _unpack(replies)) == sorted(chunk_ids)

    started = time.monotonic()
    try:
        throw()
    finally:
        elapsed = time.monotonic() - started
        agent_code = agent.wait(120)
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes["refused"] > 1000 and outcomes["accepted"] > 1000, outcomes

    assert agent_code == 0, agent.output()[-2000:]
    agent.stop()
    wait_until(lambda: int(redis_client.hget(KEYS.agents, "good-agent") or 0) >= GOOD_LINES,
               60, what="the good agent's lines")
    assert int(redis_client.hget(KEYS.agents, "good-agent")) == GOOD_LINES

    log = gateway.output()
    assert log.count("closing connection") >= outcomes["refused"]
    assert log.count("in the middle of a frame") >= outcomes["cut off"]
    assert gateway.popen.poll() is None, "the gateway died"
    peak, now = rss_kib(gateway.popen.pid, "VmHWM"), rss_kib(gateway.popen.pid)
    print(f"\n{sum(outcomes.values())} frames in {elapsed:.1f}s: {dict(outcomes)}; gateway RSS "
          f"{rss_before // 1024} MiB before, {now // 1024} MiB after, peak {peak // 1024} MiB")
    assert now - rss_before < 64 * 1024, "gateway memory grew by more than 64 MiB"
    assert peak < 256 * 1024


def _unpack(data: bytes) -> list[dict[str, object]]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)

"""The gateway as a real process against a real redis-server (no workers: we read the queue)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
import redis

from logsig import forward
from tests.celery_queue import queued_batches, queued_lines
from tests.conftest import Proc, RedisServer, free_port, logsig_cmd, wait_for_port, wait_until

QUEUE = "logsig-test"

StartGateway = Callable[..., tuple[Proc, int]]


@pytest.fixture
def start_gateway(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[StartGateway]:
    procs: list[Proc] = []

    def start(**env: str) -> tuple[Proc, int]:
        port = free_port()
        # No workers here: ack on publish; the end-to-end mode is tested below and in
        # tests/test_pipeline.py.
        settings = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port), "QUEUE": QUEUE,
                    "BATCH_SIZE": "100", "TIMEOUT": "0.5", "HEALTH_PORT": "0", "ANALYZE_PORT": "0",
                    "ACK_MODE": "published", **env}
        proc = Proc(logsig_cmd("gateway"), settings, tmp_path / f"gateway-{port}.log")
        procs.append(proc)
        wait_for_port(port, proc=proc.popen)
        return proc, port

    yield start
    for proc in procs:
        proc.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_ack(sock: socket.socket, unpacker: msgpack.Unpacker) -> str:
    while True:
        for obj in unpacker:
            return str(obj["ack"])
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("gateway closed the connection")
        unpacker.feed(data)


def packed(lines: list[str], chunk: str | None, host: str = "h1") -> bytes:
    entries = b"".join(
        forward.pack_event(time.time(), {"message": ln, "source": "/f", "host": host})
        for ln in lines
    )
    return forward.encode_packed_forward("logsig", entries, len(lines), chunk)


def test_ack_comes_only_after_the_batch_is_in_redis(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    _, port = start_gateway()
    with connect(port) as sock:
        unpacker = msgpack.Unpacker(raw=False)
        for i in range(3):
            sock.sendall(packed([f"a{i}", f"b{i}"], chunk=f"chunk-{i}"))
            assert read_ack(sock, unpacker) == f"chunk-{i}"
            assert redis_client.llen(QUEUE) == i + 1  # published before acked
    batch = queued_batches(redis_client, QUEUE)[0]
    assert [c.id for c in batch.chunks] == ["chunk-0"]
    assert batch.chunks[0].segments[0].host == "h1"
    assert batch.chunks[0].segments[0].lines() == ["a0", "b0"]


def test_message_mode_events_are_coalesced_into_batches(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    _, port = start_gateway(BATCH_SIZE="100", TIMEOUT="0.3")
    with connect(port) as sock:
        sock.sendall(b"".join(forward.encode_message("app", time.time(), {"log": f"ev {i}"})
                              for i in range(1000)))
        wait_until(lambda: len(queued_lines(redis_client, QUEUE)) == 1000, 10, what="1000 lines")
    batches = queued_batches(redis_client, QUEUE)
    assert len(batches) <= 12, f"{len(batches)} tasks for 1000 events"
    # batches publish concurrently, so order across batches is not kept; content is exact
    assert sorted(queued_lines(redis_client, QUEUE)) == sorted(f"ev {i}" for i in range(1000))


def test_a_client_waiting_for_each_ack_is_not_held_for_timeout(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    _, port = start_gateway(TIMEOUT="5")
    with connect(port) as sock:
        unpacker = msgpack.Unpacker(raw=False)
        started = time.monotonic()
        for i in range(20):
            sock.sendall(forward.encode_message("app", time.time(), {"log": f"e{i}"}, f"c{i}"))
            assert read_ack(sock, unpacker) == f"c{i}"
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"20 acked events took {elapsed:.1f}s"
    assert len(queued_lines(redis_client, QUEUE)) == 20


def test_natural_batching_grows_batches_under_concurrent_load(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    _, port = start_gateway(BATCH_SIZE="1000", TIMEOUT="5")
    socks = [connect(port) for _ in range(20)]
    try:
        unpackers = [msgpack.Unpacker(raw=False) for _ in socks]
        for rnd in range(10):
            for n, sock in enumerate(socks):
                sock.sendall(forward.encode_message("app", 1.0, {"log": "x"}, f"c{n}-{rnd}"))
            for n, sock in enumerate(socks):
                assert read_ack(sock, unpackers[n]) == f"c{n}-{rnd}"
    finally:
        for sock in socks:
            sock.close()
    batches = queued_batches(redis_client, QUEUE)
    assert sum(b.line_count for b in batches) == 200
    assert len(batches) < 200, "every event became its own task"


def test_malformed_frame_closes_only_that_connection(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    proc, port = start_gateway()
    with connect(port) as good, connect(port) as bad:
        bad.sendall(msgpack.packb([42, 1, {"log": "tag is not a string"}]))
        assert bad.recv(100) == b""  # closed by the gateway
        good.sendall(packed(["still here"], chunk="ok-1"))
        assert read_ack(good, msgpack.Unpacker(raw=False)) == "ok-1"
    with connect(port) as garbage:
        garbage.sendall(b"\xc1\xc1 not msgpack")
        assert garbage.recv(100) == b""
    log = wait_until(lambda: proc.output().count("closing connection") >= 2 and proc.output(), 5)
    assert "tag must be a string" in log
    assert "malformed msgpack" in log
    assert queued_lines(redis_client, QUEUE) == ["still here"]


def test_requests_before_a_malformed_one_in_the_same_read_are_kept(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    proc, port = start_gateway()
    with connect(port) as sock:
        sock.sendall(msgpack.packb(None)  # a heartbeat, ignored
                     + forward.encode_message("app", 1.0, {"log": "first"})
                     + forward.encode_message("app", 1.0, {b"raw key": "second"})
                     + msgpack.packb([42, 1, {"log": "tag is not a string"}]))
        assert sock.recv(100) == b""
    wait_until(lambda: len(queued_lines(redis_client, QUEUE)) == 2, 5, what="published lines")
    assert queued_lines(redis_client, QUEUE) == ["first", '{"raw key":"second"}']
    assert "tag must be a string" in proc.output()


def test_a_connection_closed_before_its_ping_is_not_a_refusal(
        start_gateway: StartGateway) -> None:
    proc, port = start_gateway(SHARED_KEY="a-shared-key-of-some-length")
    for _ in range(3):  # fluentd's default heartbeat: connect, then close
        with connect(port) as sock:
            assert sock.recv(1000)  # the HELO
    with connect(port) as sock:
        assert sock.recv(1000)
        sock.sendall(b"\x96\xa4PING")  # half a PING, then gone
    wait_until(lambda: "refused connection" in proc.output(), 5, what="a refusal")
    assert proc.output().count("refused connection") == 1, proc.output()


def test_oversized_frame_closes_the_connection_with_a_reason(start_gateway: StartGateway) -> None:
    proc, port = start_gateway(MAX_FRAME_BYTES=str(64 * 1024))
    with connect(port) as sock:
        frame = forward.encode_message("app", 1.0, {"log": "x" * 300_000}, "big")
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            sock.sendall(frame)
            assert sock.recv(100) == b""
            raise ConnectionResetError("closed as expected")
    wait_until(lambda: "exceeds MAX_FRAME_BYTES=65536" in proc.output(), 5, what="log line")


def test_sigterm_publishes_buffered_events_and_exits_zero(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    proc, port = start_gateway(BATCH_SIZE="100000", TIMEOUT="60")
    with connect(port) as sock:
        sock.sendall(b"".join(forward.encode_message("app", 1.0, {"log": f"l{i}"})
                              for i in range(50)))
        time.sleep(0.5)
        assert redis_client.llen(QUEUE) == 0  # still buffered: neither size nor timeout hit
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert sorted(queued_lines(redis_client, QUEUE)) == sorted(f"l{i}" for i in range(50))
    assert "shutting down" in proc.output()


def test_sigterm_right_after_start_up_exits_zero_promptly(start_gateway: StartGateway) -> None:
    """A SIGTERM while the Redis readers are still connecting (redis-py can swallow that
    cancellation) still ends in a graceful exit, not a hang."""
    for _ in range(5):
        proc, _port = start_gateway(ACK_MODE="counted")
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.output()


def test_no_ack_while_redis_is_unreachable(start_gateway: StartGateway) -> None:
    proc, port = start_gateway(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with connect(port) as sock:
        sock.sendall(packed(["lost?"], chunk="never-acked"))
        data = sock.recv(100)  # the gateway closes instead of acking
    assert data == b""
    assert "could not be published" in proc.output()


def test_a_client_stalling_mid_frame_is_closed_but_an_idle_one_is_kept(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    proc, port = start_gateway(READ_TIMEOUT="1")
    frame = packed(["half"], chunk="slow")
    with connect(port) as slow, connect(port) as idle:
        slow.sendall(frame[: len(frame) // 2])
        started = time.monotonic()
        assert slow.recv(100) == b""  # closed by the gateway
        assert 0.8 < time.monotonic() - started < 5
        time.sleep(0.5)  # the idle client has now been quiet for longer than READ_TIMEOUT
        idle.sendall(packed(["after idling"], chunk="idle-1"))
        assert read_ack(idle, msgpack.Unpacker(raw=False)) == "idle-1"
    assert "stalled for 1.0s in the middle of a frame" in proc.output()
    assert queued_lines(redis_client, QUEUE) == ["after idling"]


def test_counted_mode_acks_only_once_a_worker_has_recorded_the_chunk(
    start_gateway: StartGateway, redis_client: redis.Redis, redis_server: RedisServer,
    tmp_path: Path
) -> None:
    _, port = start_gateway(ACK_MODE="counted")
    with connect(port) as sock:
        sock.settimeout(1.5)
        sock.sendall(packed(["needs a worker"], chunk="e2e-1"))
        with pytest.raises(TimeoutError):  # published, but nobody has counted it yet
            sock.recv(100)
        assert redis_client.llen(QUEUE) == 1
        worker = Proc(logsig_cmd("worker", "--concurrency", "1"),
                      {"REDIS_URL": redis_server.url, "QUEUE": QUEUE}, tmp_path / "worker.log")
        try:
            sock.settimeout(60)
            assert read_ack(sock, msgpack.Unpacker(raw=False)) == "e2e-1"
        finally:
            worker.stop()
    assert redis_client.hget("logsig:agents", "h1") == "1"


def test_a_batch_is_published_at_max_frame_bytes_of_text_too(
    start_gateway: StartGateway, redis_client: redis.Redis
) -> None:
    """Limits count lines; a batch's text is bounded too (a Redis value stops at 512 MB)."""
    _, port = start_gateway(BATCH_SIZE="1000", TIMEOUT="5", MAX_FRAME_BYTES="100000")
    line = "y" * 9_000
    with connect(port) as sock:
        # Fire and forget (no chunk ids): nothing but the limits flushes the buffer.
        for i in range(30):
            sock.sendall(forward.encode_message("app", time.time(), {"log": f"{i} {line}"}))
        wait_until(lambda: len(queued_lines(redis_client, QUEUE)) >= 22, 4,
                   what="lines published before TIMEOUT")
    batches = queued_batches(redis_client, QUEUE)
    assert all(b.line_count <= 12 for b in batches), [b.line_count for b in batches]

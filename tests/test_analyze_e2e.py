"""``logsig analyze`` end to end: real redis-server, gateway and prefork worker processes.

The distributed report must equal a single-process pass of the same profile code over the
whole file. Also: refusals before the upload, a killed worker child (its chunk is retried),
a job with no worker (a clear timeout, no partial report), a client that leaves (its chunk
keys are deleted), and a hundred clients waiting at once while Forward agents keep flowing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from agents.generator import generate_lines
from logsig import forward
from logsig.analyze import submit
from logsig.jobwire import (
    AnalysisError,
    ChunkResult,
    Reply,
    Request,
    decode_body,
    encode_frame,
)
from logsig.settings import Settings
from tests.conftest import Proc, RedisServer, free_port, logsig_cmd, wait_for_port, wait_until
from tests.test_analysis_chat import HAND, expected_report, generate_chat
from workers.analysis import analyze, finalize, split_bytes
from workers.engine import make_engine
from workers.rules import load_rules

pytestmark = pytest.mark.slow
PREFIX = "ae2e"
MAX_UPLOAD = 32 * 1024 * 1024


@dataclass
class Stack:
    env: dict[str, str]
    workdir: Path
    gateway: Proc
    worker: Proc
    client: redis.Redis

    @property
    def settings(self) -> Settings:
        return Settings(gateway_host="127.0.0.1", analyze_port=int(self.env["ANALYZE_PORT"]),
                        analyze_timeout=float(self.env["ANALYZE_TIMEOUT"]))

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(logsig_cmd("analyze", *args), env={**os.environ, **self.env, **env},
                              cwd=self.workdir, capture_output=True, text=True, timeout=60)

    def chunk_keys(self) -> list[str]:
        return list(self.client.scan_iter(f"{PREFIX}:analysis:*"))


def start_gateway(redis_url: str, workdir: Path, name: str, **extra: str) -> tuple[Proc, dict]:
    env = {"REDIS_URL": redis_url, "GATEWAY_PORT": str(free_port()),
           "HEALTH_PORT": str(free_port()), "ANALYZE_PORT": str(free_port()),
           "QUEUE": "analyze-e2e", "KEY_PREFIX": PREFIX, "MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
           "ANALYZE_TIMEOUT": "60", "BATCH_SIZE": "50", "TIMEOUT": "0.2", **extra}
    proc = Proc(logsig_cmd("gateway"), env, workdir / f"{name}.log")
    wait_for_port(int(env["ANALYZE_PORT"]), proc=proc.popen)
    return proc, env


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("analyze")
    gateway, env = start_gateway(redis_server.url, workdir, "gateway")
    worker = Proc(logsig_cmd("worker", "--concurrency", "2"), env, workdir / "worker.log")
    client = redis_server.client()
    wait_until(lambda: client.hlen(f"{PREFIX}:rules") > 0, 30, what="worker start-up")
    yield Stack(env, workdir, gateway, worker, client)
    worker.stop()
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(20) == 0, gateway.output()[-2000:]
    gateway.stop()
    client.close()


@pytest.fixture(scope="module")
def engine() -> Any:
    return make_engine(load_rules())


def local_report(profile: str, data: bytes, engine: Any = None) -> dict[str, Any]:
    """The single-process pass: the same profile code over the whole file at once."""
    return finalize(analyze(profile, data, engine, 2024))


def without_job(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "job"}


def test_logs_report_equals_a_single_process_pass(stack: Stack, engine: Any) -> None:
    import json

    path = stack.workdir / "traffic.log"
    path.write_text("\n".join(generate_lines(30_000, seed=21)) + "\n")
    done = stack.cli(str(path), "--profile", "logs", "--json", "--year", "2024")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["job"]["chunks"] == 4  # 2 worker processes seen, but at least 4
    assert without_job(report) == local_report("logs", path.read_bytes(), engine)
    assert "analyze: 4/4 chunks done" in done.stderr
    assert stack.chunk_keys() == []


def test_chat_report_as_text_and_json(stack: Stack) -> None:
    data, model = generate_chat(seed=11, count=2000)
    path = stack.workdir / "chat.txt"
    path.write_bytes(data)
    report = submit(stack.settings, str(path), "chat", chunks=7)
    assert report["job"]["chunks"] == 7
    want = expected_report(model)
    assert {k: report[k] for k in want} == want
    text = stack.cli(str(path), "--profile", "chat", "--chunks", "3")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("chat report for chat.txt (3 chunks")
    assert f"messages {model.messages.total():,}" in text.stdout


def raw_exchange(port: int, request: dict[str, Any], body: bytes = b"") -> list[Reply]:
    """Send a request (and body) by hand; every reply until the gateway closes."""
    replies, unpacker = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(encode_frame(request) + body)
        while data := sock.recv(65536):
            unpacker += data
    while unpacker:
        n = int.from_bytes(unpacker[:4], "big")
        replies.append(Reply.decode(decode_body(unpacker[4:4 + n])))
        unpacker = unpacker[4 + n:]
    return replies


def test_too_large_upload_is_refused_before_any_byte_is_sent(stack: Stack) -> None:
    request = Request("logs", MAX_UPLOAD + 1).encode()
    (reply,) = raw_exchange(int(stack.env["ANALYZE_PORT"]), request)
    assert (reply.kind, reply.code) == ("error", "too_large")
    assert "MAX_UPLOAD_BYTES" in reply.message


def test_bad_request_is_refused_with_a_reason(stack: Stack) -> None:
    port = int(stack.env["ANALYZE_PORT"])
    (reply,) = raw_exchange(port, {**Request("logs", 3).encode(), "profile": "pdf"})
    assert (reply.code, "unknown profile 'pdf'" in reply.message) == ("bad_request", True)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"\x00\x00\x00\x03\x92\x01\x02")  # a frame holding a list, not a map
        reply = Reply.decode(decode_body(sock.recv(65536)[4:]))
    assert reply.code == "bad_request"


def test_empty_file_gives_an_empty_report_without_workers(stack: Stack) -> None:
    replies = raw_exchange(int(stack.env["ANALYZE_PORT"]), Request("chat", 0).encode())
    assert [r.kind for r in replies] == ["accepted", "report"]
    report = replies[-1].report
    assert report is not None and (report["messages"], report["job"]["chunks"]) == (0, 0)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_a_killed_worker_child_has_its_chunk_retried(stack: Stack, engine: Any) -> None:
    path = stack.workdir / "big.log"
    path.write_text("\n".join(generate_lines(160_000, seed=5)) + "\n")
    before = stack.worker.output().count("analyze_chunk[")
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(submit, stack.settings, str(path), "logs", 2, 2024)
        wait_until(lambda: stack.worker.output().count("analyze_chunk[") > before, 20,
                   what="the worker to receive a chunk")
        time.sleep(0.3)  # the chunk is now being analyzed (about a second per chunk)
        for pid in children(stack.worker.popen.pid):
            os.kill(pid, signal.SIGKILL)
        report = job.result(timeout=60)
    assert "WorkerLostError" in stack.worker.output()
    assert without_job(report) == local_report("logs", path.read_bytes(), engine)


def test_many_clients_wait_at_once_while_forward_agents_flow(stack: Stack) -> None:
    files = []
    for i in range(100):
        path = stack.workdir / f"c{i}.txt"
        path.write_text(HAND * (i % 5 + 1))
        files.append(path)
    with ThreadPoolExecutor(100) as pool:
        jobs = [pool.submit(submit, stack.settings, str(p), "chat", 4) for p in files]
        # Meanwhile the Forward port keeps acknowledging chunks.
        with socket.create_connection(("127.0.0.1", int(stack.env["GATEWAY_PORT"])), 10) as s:
            entries = forward.pack_event(time.time(), {"message": "hello", "source": "/f",
                                                       "host": "h"})
            s.sendall(forward.encode_packed_forward("logsig", entries, 1, "ck-1"))
            s.settimeout(10)
            assert msgpack.unpackb(s.recv(4096)) == {"ack": "ck-1"}
        reports = [j.result(timeout=60) for j in jobs]
    assert [r["messages"] for r in reports] == [6 * (i % 5 + 1) for i in range(100)]


def test_no_worker_means_a_timeout_error_and_no_report(
    stack: Stack, redis_server: RedisServer
) -> None:
    proc, env = start_gateway(redis_server.url, stack.workdir, "lonely-gateway",
                              QUEUE="nobody-listens", ANALYZE_TIMEOUT="1.5")
    try:
        path = stack.workdir / "lonely.txt"
        path.write_text(HAND)
        done = stack.cli(str(path), "--profile", "chat", **env)
        assert done.returncode == 1
        assert "job failed (timeout): 0 of 4 chunks finished within ANALYZE_TIMEOUT=1.5s" \
            in done.stderr
        assert "report" not in done.stdout
        assert stack.chunk_keys() == []
        # A client that leaves mid-job cancels it: its chunk keys go at once.
        with socket.create_connection(("127.0.0.1", int(env["ANALYZE_PORT"])), 10) as sock:
            data = HAND.encode()
            sock.sendall(encode_frame(Request("chat", len(data), 2).encode()) + data)
            sock.recv(65536)
            wait_until(lambda: stack.chunk_keys(), 5, what="chunks stored")
        wait_until(lambda: stack.chunk_keys() == [], 5, what="chunk keys deleted")
    finally:
        proc.stop()


def test_error_codes_reach_the_python_client(stack: Stack) -> None:
    path = stack.workdir / "huge.txt"
    with path.open("wb") as fh:
        fh.truncate(MAX_UPLOAD + 1)
    with pytest.raises(AnalysisError) as info:
        submit(stack.settings, str(path), "chat")
    assert info.value.code == "too_large"


def test_a_taken_analysis_port_does_not_stop_ingestion(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = free_port()
        env = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port),
               "HEALTH_PORT": str(free_port()), "ANALYZE_PORT": str(taken.getsockname()[1])}
        proc = Proc(logsig_cmd("gateway"), env, tmp_path / "gateway.log")
        try:
            wait_for_port(port, proc=proc.popen)
            wait_until(lambda: "analysis jobs disabled" in proc.output(), 10,
                       what="the reason in the log")
            proc.signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            proc.stop()


def test_an_answer_whose_note_is_lost_is_still_found(
    stack: Stack, redis_server: RedisServer
) -> None:
    """The results hash is the truth; inbox notes only wake the job up sooner."""
    proc, env = start_gateway(redis_server.url, stack.workdir, "quiet-gateway",
                              QUEUE="nobody-listens-2")
    try:
        data = HAND.encode()
        with socket.create_connection(("127.0.0.1", int(env["ANALYZE_PORT"])), 10) as sock:
            sock.settimeout(10)
            sock.sendall(encode_frame(Request("chat", len(data), 2).encode()) + data)
            stream = sock.makefile("rb")

            def next_reply() -> Reply:
                n = int.from_bytes(stream.read(4), "big")
                return Reply.decode(decode_body(stream.read(n)))

            job = next_reply().job
            assert next_reply().total == 2
            for i, chunk in enumerate(split_bytes(data, 2)):  # as a worker would, minus note
                answer = ChunkResult.success(job, i, analyze("chat", chunk))
                stack.client.hset(f"{PREFIX}:analysis-results:{job}", str(i), answer.encode())
            replies = [next_reply(), next_reply()]
        assert [r.kind for r in replies] == ["progress", "report"]
        assert without_job(replies[1].report or {}) == local_report("chat", data)
        wait_until(lambda: not list(stack.client.scan_iter(f"{PREFIX}:analysis*:{job}*")), 5,
                   what="the job's keys deleted")
    finally:
        proc.stop()

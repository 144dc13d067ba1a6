"""End to end with real processes: agents tail files -> gateway -> Redis -> prefork workers.

The expected counts come from the reference engine (Python ``re``, every rule on every line),
which defines what the workers must find; the pipeline must reproduce them exactly, with no
line lost and none counted twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from logsig.keys import Keys
from tests.conftest import Proc, RedisServer, free_port, logsig_cmd, wait_for_port, wait_until
from workers.engine import ReferenceEngine
from workers.rules.loader import load_rules

pytestmark = pytest.mark.slow
KEYS = Keys("logsig")


@dataclass
class Pipeline:
    env: dict[str, str]
    workdir: Path
    port: int
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, *args: str, **env: str) -> Proc:
        proc = Proc(logsig_cmd(*args), {**self.env, **env}, self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> int | None:
        return self.procs[name].stop()


@pytest.fixture
def pipeline(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Pipeline]:
    port = free_port()
    env = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port), "BATCH_SIZE": "200",
           "TIMEOUT": "0.3", "PARTIAL_LINE_TIMEOUT": "0.5", "POLL_INTERVAL": "0.05",
           "QUEUE": "logsig-e2e", "HEALTH_PORT": "0", "ANALYZE_PORT": "0"}
    p = Pipeline(env, tmp_path, port)
    p.start("worker", "worker", "--concurrency", "2")
    gateway = p.start("gateway", "gateway")
    wait_for_port(port, proc=gateway.popen)
    wait_until(lambda: redis_client.hlen(KEYS.rules) > 0, 30, what="worker start-up")
    yield p
    for proc in p.procs.values():
        proc.stop()


def sample_lines(n: int, offset: int) -> list[str]:
    """Every rule's examples (hits and near misses) interleaved with benign filler lines."""
    examples = [ln for r in load_rules() for ln in (*r.match_examples, *r.nomatch_examples)]
    out = []
    for i in range(n):
        k = i + offset
        out.append(examples[k % len(examples)] if k % 3 == 0
                   else f"Nov 22 10:{k % 60:02d}:00 app[{k}]: request {k} served in {k % 97} ms")
    return out


def expected(lines: list[str]) -> Counter[str]:
    rules = load_rules()
    return Counter(rules[r].id for _, r in ReferenceEngine(rules).scan(lines))


def counts(client: redis.Redis, key: str) -> Counter[str]:
    return Counter({k: int(v) for k, v in client.hgetall(key).items()})


def test_two_agents_tailing_files_count_every_line_exactly_once(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    lines1, lines2 = sample_lines(3000, 0), sample_lines(2500, 7)
    file1, file2 = pipeline.workdir / "web.log", pipeline.workdir / "auth.log"
    file1.write_bytes("".join(f"{ln}\r\n" for ln in lines1[:1500]).encode())  # CRLF endings
    file2.write_text("".join(f"{ln}\n" for ln in lines2[:1000]))
    for n, path in ((1, file1), (2, file2)):
        pipeline.start(f"agent-{n}", "agent", str(path), "--name", f"agent-{n}",
                       "--registry", str(pipeline.workdir / f"registry-{n}.json"))
    time.sleep(1.0)  # the agents are following: append while they run
    with file1.open("ab") as f:
        f.write("".join(f"{ln}\r\n" for ln in lines1[1500:]).encode())
    with file2.open("a") as f:  # the last line stays unterminated, as in many real logs
        f.write("\n".join(lines2[1000:]))

    total = len(lines1) + len(lines2)
    wait_until(lambda: int(redis_client.hget(KEYS.totals, "lines") or 0) >= total, 90,
               interval=0.2, what=f"{total} lines counted")
    time.sleep(1.0)  # anything extra (a duplicate) would arrive now

    exp1, exp2 = expected(lines1), expected(lines2)
    totals = counts(redis_client, KEYS.totals)
    assert totals["lines"] == total
    assert totals["duplicates"] == 0
    assert totals["matches"] == sum((exp1 + exp2).values())
    assert counts(redis_client, KEYS.signatures) == exp1 + exp2
    assert counts(redis_client, KEYS.agent("agent-1")) == exp1
    assert counts(redis_client, KEYS.agent("agent-2")) == exp2
    assert counts(redis_client, KEYS.agents) == {"agent-1": len(lines1), "agent-2": len(lines2)}
    assert len(exp1 + exp2) >= 20, "the sample should exercise many signatures"

    for name in ("agent-1", "agent-2", "gateway", "worker"):
        pipeline.procs[name].signal(signal.SIGTERM)
    for name in ("agent-1", "agent-2", "gateway", "worker"):
        assert pipeline.procs[name].wait(30) == 0, pipeline.procs[name].output()[-2000:]


def test_fluent_logger_client_interoperates(pipeline: Pipeline, redis_client: redis.Redis) -> None:
    from fluent import sender  # the Fluentd team's own client, from PyPI

    attack = ('203.0.113.9 - - [22/Nov/2026:10:00:00 +0000] "GET /item.php?id=1%20union%20select'
              '%20password%20from%20users HTTP/1.1" 200 512 "-" "Mozilla/5.0"')
    client = sender.FluentSender("app", host="127.0.0.1", port=pipeline.port,
                                 nanosecond_precision=True)
    try:
        for i in range(40):
            assert client.emit("web", {"message": attack if i % 4 == 0 else f"hello {i}",
                                       "host": "fluent-client"}), client.last_error
        for i in range(10):  # a structured record without a text field is kept as JSON
            assert client.emit("audit", {"user": "alice", "action": "login", "n": i})
    finally:
        client.close()
    wait_until(lambda: int(redis_client.hget(KEYS.totals, "lines") or 0) >= 50, 30,
               what="50 fluent-logger records counted")
    lines = [attack if i % 4 == 0 else f"hello {i}" for i in range(40)]
    assert counts(redis_client, KEYS.agent("fluent-client")) == expected(lines)
    assert int(redis_client.hget(KEYS.agents, "fluent-client")) == 40
    assert int(redis_client.hget(KEYS.totals, "lines")) == 50
    assert sum(expected(lines).values()) >= 10

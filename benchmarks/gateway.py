"""Gateway alone: Forward v1 ingest into Redis with no workers, from 1 to 10,000 connections.

* Saturation points: N agent connections (1, 100, 1,000, 10,000), each sending PackedForward
  chunks with a ``chunk`` id and waiting for the ack before the next one (closed loop).
  Figures: lines/s, batches/s (Celery tasks in the queue, read with LLEN since nothing
  consumes them), ack latency p50/p99 (at saturation: mostly queueing), the gateway's peak
  RSS (VmHWM) and CPU seconds. Chunks are 100 lines, fewer where one chunk per connection
  would exceed ``--round-lines`` (10,000 connections: 20 lines), to bound the run's time.
* The target scenario: 10,000 idle connections (one tiny chunk each, then held open) while
  100 active agents each send a chunk at a fixed interval, well below saturation. Targets:
  gateway RSS < 200 MB, active agents' ack p99 < 50 ms.

Every run gets a fresh redis-server and gateway (``ACK_MODE=published``: a chunk is acked
once its task is in Redis), once with ``EVENT_LOOP=uvloop`` and once with
``EVENT_LOOP=asyncio``; the load comes from one event loop in this process. Medians over
``--repeat`` runs, ratios uvloop/asyncio. ``python -m benchmarks.gateway`` (``--quick`` for a
smoke run) prints a table and writes ``benchmarks/results/gateway.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import msgpack
import redis

from agents.block import Block
from agents.encoder import FrameEncoder
from benchmarks._common import corpus, exit_on_sigterm, percentile, wait
from benchmarks.e2e import Stack, median_of, running, usage
from gateway.server import _loop_factory

RESULTS = Path(__file__).resolve().parent / "results" / "gateway.json"
QUEUE = "logsig-gwbench"
TAG = "logsig"
LOOPS = ("uvloop", "asyncio")
CONNECT_CONCURRENCY = 500  # handshakes in flight, well under the gateway's listen backlog
FD_MARGIN = 64  # descriptors besides the connections (Redis client, logs, pipes)
GRACE = 60.0  # seconds allowed past a phase's deadline for its last acks
ENCODERS = 16  # distinct agent hosts / line sets the connections cycle through
RSS_TARGET_MB = 200.0
P99_TARGET_MS = 50.0
RATIOS = ("lines_per_s", "batches_per_s", "ack_p50_ms", "ack_p99_ms", "gateway_rss_mib",
          "gateway_cpu_s", "gateway_cpu_us_per_line")

Probe = Callable[[], tuple[float, int]]


@dataclass(frozen=True)
class Point:
    """One measured configuration: connections sending, connections idle, and the pace."""

    name: str
    active: int
    chunk_lines: int
    idle: int = 0
    interval: float = 0.0  # seconds between an active agent's chunks; 0: closed loop

    @property
    def connections(self) -> int:
        return self.active + self.idle


@dataclass(frozen=True)
class Load:
    """Bounds of every active phase: its duration and the lines it may send in all."""

    seconds: float
    max_lines: int


@dataclass
class Tally:
    """What the active connections saw, shared by them (one event loop: no locking)."""

    latencies: list[float] = field(default_factory=list)
    lines: int = 0
    max_lag: float = 0.0  # how late the load generator sent a paced chunk, at worst

    def add(self, latency: float, lines: int) -> None:
        self.latencies.append(latency)
        self.lines += lines


class Frames:
    """Entries packed once by the agents' own encoder; sending only wraps them in a frame."""

    def __init__(self, lines: list[str], chunk_lines: int) -> None:
        self.chunk_lines = chunk_lines
        now = time.time()
        self._encoders = [FrameEncoder(TAG, f"bench-agent-{n}") for n in range(ENCODERS)]
        self._blocks = [Block("bench", now, lines[n * chunk_lines:(n + 1) * chunk_lines])
                        for n in range(ENCODERS)]
        self._entries = [enc.entries(b) for enc, b in zip(self._encoders, self._blocks,
                                                          strict=True)]
        self._tiny_block = Block("bench", now, ["idle agent says hello"])
        self._tiny = self._encoders[0].entries(self._tiny_block)

    def chunk(self, n: int, chunk_id: str) -> bytes:
        k = n % ENCODERS
        return self._encoders[k].frame([self._blocks[k]], [self._entries[k]], chunk_id)

    def tiny(self, chunk_id: str) -> bytes:
        return self._encoders[0].frame([self._tiny_block], [self._tiny], chunk_id)


class AgentConnection(asyncio.Protocol):
    """One agent connection: writes frames and resolves each chunk's future on its ack.

    A bare Protocol rather than ``agents.client.ForwardClient`` (resends, timers, a window),
    so the load generator stays cheap enough for 10,000 connections on one loop.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._unpacker = msgpack.Unpacker(raw=False, read_size=4096, max_buffer_size=65536)
        self._waiting: dict[str, asyncio.Future[float]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._unpacker.feed(data)
        for reply in self._unpacker:
            chunk = reply.get("ack") if isinstance(reply, dict) else None
            future = self._waiting.pop(chunk, None) if isinstance(chunk, str) else None
            if future is not None and not future.done():
                future.set_result(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"gateway closed the connection ({exc})"))
        self._waiting.clear()

    async def request(self, chunk_id: str, frame: bytes) -> float:
        """Send one chunk; return the seconds from its write to its ack."""
        assert self.transport is not None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[chunk_id] = future
        sent = time.perf_counter()
        self.transport.write(frame)
        return await future - sent

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# --------------------------------------------------------------------------- processes


class GatewayStack(Stack):
    """e2e's Stack without workers: a redis-server and one gateway on the chosen loop."""

    def __init__(self, workdir: Path, event_loop: str, max_connections: int) -> None:
        super().__init__(workdir, batch_size=1000)
        self.port = int(self.env["GATEWAY_PORT"])
        self.env.update(ACK_MODE="published", QUEUE=QUEUE, EVENT_LOOP=event_loop,
                        MAX_CONNECTIONS=str(max_connections))

    def start(self) -> redis.Redis:
        client = self.start_redis()
        gateway = self.spawn("gateway", sys.executable, "-m", "logsig", "gateway")
        wait(lambda: self._accepting(gateway), 30, "the gateway to listen")
        return client

    def _accepting(self, proc: subprocess.Popen[bytes]) -> bool:
        if proc.poll() is not None:
            log = (self.workdir / "gateway.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def gateway_stack(event_loop: str, max_connections: int) -> AbstractContextManager[
        tuple[GatewayStack, redis.Redis]]:
    """A started stack, every child process stopped on the way out (errors included)."""
    return running(lambda workdir: GatewayStack(workdir, event_loop, max_connections),
                   "logsig-gwbench-")


def queued(client: redis.Redis) -> int:
    """Celery tasks waiting in the queue: every batch published, as no worker takes any."""
    return int(client.llen(QUEUE))


def uvloop_loaded(pid: int) -> bool:
    """Whether uvloop's extension is mapped into ``pid``: proof of which loop it runs."""
    return "uvloop" in Path(f"/proc/{pid}/maps").read_text()


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # the kernel's nr_open
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit; points that need more are skipped
    return soft


# --------------------------------------------------------------------------- load


async def open_connections(port: int, count: int) -> list[AgentConnection]:
    """``count`` connections, a bounded number of handshakes at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> AgentConnection:
        async with gate:
            _, proto = await loop.create_connection(AgentConnection, "127.0.0.1", port)
            return proto

    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    conns = [c for c in opened if isinstance(c, AgentConnection)]
    failed = [e for e in opened if isinstance(e, BaseException)]
    if failed:
        for conn in conns:
            conn.close()
        raise ConnectionError(f"{len(failed)} of {count} connections failed: {failed[0]!r}")
    return conns


async def warm_up(conns: list[AgentConnection], frames: Frames) -> None:
    """One tiny chunk per connection, acked: each one is accepted and served, not refused."""
    await asyncio.gather(*(c.request(f"w{n}", frames.tiny(f"w{n}"))
                           for n, c in enumerate(conns)))


def send(conn: AgentConnection, frames: Frames, index: int, n: int) -> Awaitable[float]:
    """Connection ``index``'s ``n``-th chunk; resolves to its ack latency."""
    chunk_id = f"{index}-{n}"
    return conn.request(chunk_id, frames.chunk(index + n, chunk_id))


async def closed_loop(conn: AgentConnection, index: int, frames: Frames, until: float,
                      max_chunks: int, tally: Tally) -> None:
    """Send, wait for the ack, send again: until the deadline or ``max_chunks``."""
    for n in range(max_chunks):
        if time.perf_counter() >= until:
            return
        tally.add(await send(conn, frames, index, n), frames.chunk_lines)


async def paced(conn: AgentConnection, index: int, frames: Frames, start: float,
                interval: float, count: int, tally: Tally) -> None:
    """One chunk every ``interval`` whatever the acks (an agent's window), so a slow gateway
    shows up as ack latency instead of as a lower offered rate."""
    pending: list[asyncio.Future[float]] = []
    for n in range(count):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.max_lag = max(tally.max_lag, -delay)
        pending.append(asyncio.ensure_future(send(conn, frames, index, n)))
    for latency in await asyncio.gather(*pending):
        tally.add(latency, frames.chunk_lines)


async def active_phase(conns: list[AgentConnection], point: Point, load: Load,
                       frames: Frames, tally: Tally) -> None:
    """Every active connection at once, bounded by ``load.seconds`` and ``load.max_lines``."""
    start = time.perf_counter()
    if point.interval:
        count = max(1, round(load.seconds / point.interval))
        # Staggered starts: 100 agents on a 50 ms period send one chunk every 0.5 ms.
        jobs = [paced(c, n, frames, start + n * point.interval / len(conns), point.interval,
                      count, tally) for n, c in enumerate(conns)]
    else:
        max_chunks = max(1, load.max_lines // (len(conns) * point.chunk_lines))
        jobs = [closed_loop(c, n, frames, start + load.seconds, max_chunks, tally)
                for n, c in enumerate(conns)]
    await asyncio.gather(*jobs)


async def drive(port: int, point: Point, load: Load, frames: Frames,
                probe: Probe) -> dict[str, float]:
    """Connect, warm up, run the active phase; figures of the active phase only."""
    t0 = time.perf_counter()
    conns = await open_connections(port, point.connections)
    try:
        await asyncio.wait_for(warm_up(conns, frames), GRACE)
        connect_s = time.perf_counter() - t0
        cpu0, queued0 = probe()
        tally, own0, started = Tally(), time.process_time(), time.perf_counter()
        await asyncio.wait_for(active_phase(conns[:point.active], point, load, frames, tally),
                               load.seconds + GRACE)
        elapsed = time.perf_counter() - started
        loadgen_cpu = time.process_time() - own0
        cpu1, queued1 = probe()
        lost = sum(c.lost for c in conns)
        ranked = sorted(tally.latencies)
    finally:
        for conn in conns:
            conn.close()
    return {"lines": tally.lines, "seconds": elapsed, "lines_per_s": tally.lines / elapsed,
            "batches": queued1 - queued0, "batches_per_s": (queued1 - queued0) / elapsed,
            "ack_p50_ms": percentile(ranked, 50) * 1e3, "ack_p99_ms": percentile(ranked, 99) * 1e3,
            "gateway_cpu_s": cpu1 - cpu0,
            "gateway_cpu_us_per_line": (cpu1 - cpu0) / max(tally.lines, 1) * 1e6,
            "loadgen_cpu_s": loadgen_cpu, "connect_s": connect_s,
            "max_send_lag_ms": tally.max_lag * 1e3, "lost_connections": lost}


# --------------------------------------------------------------------------- runs


def measure(point: Point, load: Load, frames: Frames, event_loop: str) -> dict[str, float]:
    """One run of ``point`` against a fresh redis-server and gateway on ``event_loop``."""
    with gateway_stack(event_loop, point.connections + FD_MARGIN) as (stack, client):
        pid = stack.procs["gateway"].pid

        def probe() -> tuple[float, int]:
            return usage(pid)[0], queued(client)

        with asyncio.Runner(loop_factory=_loop_factory("auto")) as runner:
            figures = runner.run(drive(stack.port, point, load, frames, probe))
        figures["gateway_rss_mib"] = usage(pid)[1] / 1024
        if uvloop_loaded(pid) != (event_loop == "uvloop"):
            raise RuntimeError(f"the gateway did not run on {event_loop}")
    return figures


def run_point(point: Point, load: Load, lines: list[str], repeat: int) -> dict[str, object]:
    """Medians over ``repeat`` runs per loop, loops interleaved so drift hits both alike."""
    frames = Frames(lines, point.chunk_lines)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LOOPS}
    for _ in range(repeat):
        for name in LOOPS:
            runs[name].append(measure(point, load, frames, name))
    medians = {name: median_of(r) for name, r in runs.items()}
    ratio = {key: medians["uvloop"][key] / medians["asyncio"][key]
             for key in RATIOS if medians["asyncio"][key]}
    result: dict[str, object] = {**asdict(point), **medians, "ratio_uvloop_over_asyncio": ratio}
    if point.interval:
        result["offered_lines_per_s"] = point.active * point.chunk_lines / point.interval
    if point.idle:
        result["targets"] = verdict(medians)
    return result


def plan(args: argparse.Namespace) -> list[Point]:
    """The saturation points, then the idle-plus-active target scenario.

    A closed-loop point sends at least one chunk per connection: above ``round_lines /
    chunk_lines`` connections the chunks shrink, so 10,000 connections stay bounded in time.
    """
    points = []
    for n in args.points:
        size = max(1, min(args.chunk_lines, args.round_lines // n))
        points.append(Point(f"{n:,} conns x {size} lines", n, size))
    points.append(Point(f"{args.idle:,} idle + {args.active} paced", args.active,
                        args.chunk_lines, args.idle, args.interval))
    return points


# --------------------------------------------------------------------------- report

COLUMNS = (("lines/s", "lines_per_s", "{:,.0f}"), ("batches/s", "batches_per_s", "{:,.0f}"),
           ("ack p50 ms", "ack_p50_ms", "{:,.2f}"), ("ack p99 ms", "ack_p99_ms", "{:,.2f}"),
           ("gw RSS MiB", "gateway_rss_mib", "{:,.1f}"), ("gw CPU s", "gateway_cpu_s", "{:,.2f}"),
           ("gw us/line", "gateway_cpu_us_per_line", "{:,.2f}"),
           ("gen CPU s", "loadgen_cpu_s", "{:,.2f}"))


def table_rows(name: str, result: dict[str, object]) -> list[str]:
    """Three rows per point: uvloop, asyncio and their ratio."""
    rows = []
    for loop in (*LOOPS, "ratio_uvloop_over_asyncio"):
        figures = result[loop]
        assert isinstance(figures, dict)
        is_ratio = loop.startswith("ratio")
        label = "uvloop/asyncio" if is_ratio else loop
        cells = [(f"{figures[key]:,.2f}x" if is_ratio else fmt.format(figures[key]))
                 if key in figures else "-" for _, key, fmt in COLUMNS]
        rows.append(f"{name:>28} {label:>14} " + " ".join(f"{c:>11}" for c in cells))
    return rows


def header() -> str:
    return f"{'point':>28} {'loop':>14} " + " ".join(f"{t:>11}" for t, _, _ in COLUMNS)


def verdict(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, object]]:
    """The issue's targets for the idle scenario, per loop."""
    out: dict[str, dict[str, object]] = {}
    for loop, figures in medians.items():
        rss_mb = figures["gateway_rss_mib"] * 1.048576
        out[loop] = {"rss_mb": rss_mb, "rss_met": rss_mb < RSS_TARGET_MB,
                     "ack_p99_ms": figures["ack_p99_ms"],
                     "p99_met": figures["ack_p99_ms"] < P99_TARGET_MS,
                     "lost_connections": figures["lost_connections"]}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 100, 1000, 10_000], help="connection counts, comma-separated")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections (scenario)")
    parser.add_argument("--active", type=int, default=100, help="active agents (scenario)")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="seconds between an active agent's chunks (scenario)")
    parser.add_argument("--chunk-lines", type=int, default=100)
    parser.add_argument("--round-lines", type=int, default=200_000,
                        help="closed-loop chunks shrink so one chunk per connection fits")
    parser.add_argument("--seconds", type=float, default=5.0, help="active phase, per run")
    parser.add_argument("--max-lines", type=int, default=3_000_000, help="per run, at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: small, once")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.idle, args.active = [1, 10, 50], 200, 10
        args.seconds, args.max_lines, args.repeat = 1.0, 200_000, 1
        args.interval = 0.05
    return args


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    args = parse_args(argv)
    fd_limit = raise_nofile()
    load = Load(args.seconds, args.max_lines)
    lines = corpus(args.chunk_lines * ENCODERS)[0]
    print_preamble(args, fd_limit)
    print(header(), flush=True)
    report: dict[str, dict[str, object]] = {}
    for point in plan(args):
        report[point.name] = result = attempt(point, load, lines, args.repeat, fd_limit)
        if "reason" in result:
            print(f"{point.name:>28} {result['reason']}", flush=True)
        else:
            print("\n".join(table_rows(point.name, result)), flush=True)
    print_targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    failed = [r for r in report.values() if str(r.get("reason", "")).startswith("failed")]
    return 1 if failed else 0  # a point skipped for want of descriptors is not a failure


def attempt(point: Point, load: Load, lines: list[str], repeat: int,
            fd_limit: int) -> dict[str, object]:
    """A point's result, or why it was skipped or failed (the other points still run)."""
    if point.connections + FD_MARGIN > fd_limit:
        return {"reason": f"skipped: needs {point.connections + FD_MARGIN:,} descriptors, the "
                          f"RLIMIT_NOFILE hard limit is {fd_limit:,}"}
    try:
        return run_point(point, load, lines, repeat)
    except (OSError, RuntimeError, TimeoutError) as exc:  # ConnectionError is an OSError
        return {"reason": f"failed: {type(exc).__name__}: {exc}"}


def print_preamble(args: argparse.Namespace, fd_limit: int) -> None:
    generator = "uvloop" if _loop_factory("auto") else "asyncio"
    rate = args.active * args.chunk_lines / args.interval
    print(f"gateway alone, no workers (ACK_MODE=published, BATCH_SIZE=1000); closed-loop "
          f"points: each connection sends a chunk and waits for its ack, for {args.seconds:g} s "
          f"(at most {args.max_lines:,} lines); median of {args.repeat}; load from one "
          f"{generator} loop in this process; RLIMIT_NOFILE {fd_limit:,}")
    print(f"paced scenario: {args.idle:,} idle connections (one 1-line chunk each, then held "
          f"open) + {args.active} active agents, each a {args.chunk_lines}-line chunk every "
          f"{args.interval * 1e3:g} ms: offered {rate:,.0f} lines/s, "
          f"{args.active / args.interval:,.0f} chunks/s\n", flush=True)


def print_targets(report: dict[str, dict[str, object]]) -> None:
    for name, result in report.items():
        targets = result.get("targets", {})
        assert isinstance(targets, dict)
        for loop, t in targets.items():
            print(f"\n{name}, {loop}: gateway peak RSS {t['rss_mb']:,.0f} MB (target < "
                  f"{RSS_TARGET_MB:g}: {'met' if t['rss_met'] else 'NOT met'}), active ack p99 "
                  f"{t['ack_p99_ms']:,.1f} ms (target < {P99_TARGET_MS:g}: "
                  f"{'met' if t['p99_met'] else 'NOT met'}), connections lost: "
                  f"{t['lost_connections']:g}", end="")
    print()


if __name__ == "__main__":
    sys.exit(main())

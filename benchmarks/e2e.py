"""End to end: the whole pipeline against the naive design and the scan ceiling, in one run.

* pipeline: a private redis-server, a gateway, a 2-process prefork worker and N agents that
  replay a corpus as fast as acknowledgements allow; lines/s and MB/s from the agents' start
  to the last line counted in Redis, CPU seconds and peak RSS of every component, CPU seconds
  per million lines for the whole pipeline.
* naive: the same worker, but one Celery task per line (a smaller sample, extrapolated per
  line and labelled so).
* ceiling: the workers' engine scanning the same lines in this process, no network.

``python -m benchmarks.e2e`` (``--quick`` for a smoke run) prints a table and writes
``benchmarks/results/e2e.json``. Medians over ``--repeat`` runs; ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from benchmarks._common import corpus, wait
from logsig.batch import TASK_NAME, Batch, Chunk
from logsig.celeryconf import make_celery
from logsig.keys import Keys
from logsig.net import free_port
from logsig.settings import Settings
from workers.engine import make_engine
from workers.rules import load_rules

RESULTS = Path(__file__).resolve().parent / "results" / "e2e.json"
KEYS = Keys("logsig")
TICK = os.sysconf("SC_CLK_TCK")


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

    def __init__(self, workdir: Path, batch_size: int) -> None:
        self.workdir = workdir
        self.redis_port, port = free_port(), free_port()
        self.env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "GATEWAY_PORT": str(port), "HEALTH_PORT": "0", "ANALYZE_PORT": "0",
                    "BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING",
                    "QUEUE": "logsig-bench"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def start(self) -> redis.Redis:
        self.spawn("redis", "redis-server", "--port", str(self.redis_port), "--bind",
                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir))
        client = redis.Redis(port=self.redis_port, decode_responses=True)
        wait(lambda: _pings(client), 10, "redis")
        self.spawn("worker", sys.executable, "-m", "logsig", "worker", "--concurrency", "2")
        self.spawn("gateway", sys.executable, "-m", "logsig", "gateway")
        wait(lambda: client.hlen(KEYS.rules) > 0, 30, "worker start-up")
        time.sleep(2.0)  # the pool processes compile their engines
        return client

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextmanager
def stack(batch_size: int) -> Iterator[tuple[Stack, redis.Redis]]:
    with tempfile.TemporaryDirectory(prefix="logsig-e2e-") as tmp:
        s = Stack(Path(tmp), batch_size)
        try:
            yield s, s.start()
        finally:
            s.stop()


def counted(client: redis.Redis) -> int:
    return int(client.hget(KEYS.totals, "lines") or 0)


def run_pipeline(lines: list[str], agents: int, batch_size: int) -> dict[str, float]:
    with stack(batch_size) as (s, client):
        per_agent = len(lines) // agents
        paths = []
        for n in range(agents):
            path = s.workdir / f"app-{n}.log"
            path.write_text("\n".join(lines[n * per_agent:(n + 1) * per_agent]) + "\n")
            paths.append(path)
        total = per_agent * agents
        size = sum(len(ln) + 1 for ln in lines[:total])
        before = {name: usage(p.pid)[0] for name, p in s.procs.items()}
        started = time.perf_counter()
        for n, path in enumerate(paths):
            s.spawn(f"agent-{n}", sys.executable, "-m", "logsig", "agent", str(path),
                    "--name", f"agent-{n}", "--registry", str(s.workdir / f"reg-{n}.json"))
        wait(lambda: counted(client) >= total, 600, f"{total} lines counted")
        elapsed = time.perf_counter() - started
        cpu = {name: usage(p.pid)[0] - before.get(name, 0.0) for name, p in s.procs.items()}
        rss = {name: usage(p.pid)[1] for name, p in s.procs.items()}
    agents_cpu = sum(v for k, v in cpu.items() if k.startswith("agent"))
    return {"lines": total, "seconds": elapsed, "lines_per_s": total / elapsed,
            "mb_per_s": size / elapsed / 1e6,
            "cpu_gateway": cpu["gateway"], "cpu_worker": cpu["worker"], "cpu_redis": cpu["redis"],
            "cpu_agents": agents_cpu, "cpu_s_per_m_lines": sum(cpu.values()) / total * 1e6,
            "rss_mib_gateway": rss["gateway"] / 1024, "rss_mib_worker": rss["worker"] / 1024,
            "rss_mib_redis": rss["redis"] / 1024,
            "rss_mib_agent": max(v for k, v in rss.items() if k.startswith("agent")) / 1024}


def run_naive(lines: list[str]) -> dict[str, float]:
    """One Celery task per line through the same worker (published from here)."""
    with stack(1) as (s, client):
        app = make_celery(Settings(redis_url=s.env["REDIS_URL"], queue=s.env["QUEUE"]))
        started = time.perf_counter()
        for n, line in enumerate(lines):
            chunk = Chunk(f"naive-{n}")
            chunk.add("naive", "bench", time.time(), line)
            app.send_task(TASK_NAME, args=[Batch("naive", [chunk]).encode()])
        published = time.perf_counter() - started
        wait(lambda: counted(client) >= len(lines), 600, "naive tasks done")
        elapsed = time.perf_counter() - started
        app.close()
    return {"lines": len(lines), "seconds": elapsed, "lines_per_s": len(lines) / elapsed,
            "publish_per_s": len(lines) / published}


def run_ceiling(lines: list[str], batch_size: int) -> dict[str, float]:
    engine = make_engine(load_rules())
    batches = [lines[i:i + batch_size] for i in range(0, len(lines), batch_size)]
    cpu0, started = time.process_time(), time.perf_counter()
    for batch in batches:
        engine.scan(batch)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - started
    return {"lines": len(lines), "seconds": elapsed, "lines_per_s": len(lines) / elapsed,
            "cpu_s_per_m_lines": cpu / len(lines) * 1e6}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--naive-lines", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: small, once")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.lines, args.naive_lines, args.repeat = 20_000, 300, 1
    lines, source = corpus(args.lines)
    print(f"corpus: {len(lines):,} lines ({source}); {args.agents} agents, batch {args.batch}, "
          f"{len(load_rules())} rules, median of {args.repeat}", flush=True)
    pipe = median_of([run_pipeline(lines, args.agents, args.batch) for _ in range(args.repeat)])
    naive = median_of([run_naive(lines[:args.naive_lines]) for _ in range(args.repeat)])
    ceiling = median_of([run_ceiling(lines, args.batch) for _ in range(args.repeat)])
    ratios = {"pipeline_over_naive": pipe["lines_per_s"] / naive["lines_per_s"],
              "ceiling_over_pipeline": ceiling["lines_per_s"] / pipe["lines_per_s"],
              "cpu_pipeline_over_ceiling": pipe["cpu_s_per_m_lines"]
              / ceiling["cpu_s_per_m_lines"]}
    report = {"pipeline": pipe, "naive (per-line tasks, sample extrapolated)": naive,
              "ceiling (engine, one process)": ceiling, "ratios": ratios}
    for name, figures in report.items():
        print(f"\n{name}")
        for key, value in figures.items():
            print(f"  {key:28} {value:>14,.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A batch analysis job, distributed vs. single-process, on the same file in the same run.

It writes a generated log file (:func:`agents.generator.generate_lines`, 1,000,000 lines by
default) and times, ``--repeat`` times each:

* ``single``: one process reads the file and runs the ``logs`` profile over all of it, then
  finalizes the report (the engine is compiled beforehand, as a worker's is);
* ``distributed``: ``logs.analyze.submit`` through a real gateway and a real prefork worker
  (``--workers`` processes, default 2) on a private redis-server: upload, split, dispatch,
  analysis, merge and report, as the client sees it.

Both reports must be identical (checked). It prints the medians and the speed-up, and
writes JSON to ``benchmarks/results/analyze.json``. The gateway, Redis and the workers share
the machine's cores, so on 2 cores the speed-up is below 2. Run:
``.venv/bin/python -m benchmarks.analyze`` (about a minute) or ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from agents.generator import generate_lines
from benchmarks._common import exit_on_sigterm, redis_server_args, wait
from logsig.analyze import submit
from logsig.net import free_port
from logsig.settings import Settings
from workers.analysis import analyze, finalize
from workers.engine import make_engine
from workers.rules import load_rules

RESULTS = Path(__file__).resolve().parent / "results" / "analyze.json"
YEAR = 2024
PREFIX = "bench-analyze"


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def cluster(workdir: Path, workers: int) -> Iterator[Settings]:
    """A private redis-server, a gateway and a worker; yields the client's settings."""
    redis_port, analyze_port = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "GATEWAY_PORT": str(free_port()), "HEALTH_PORT": str(free_port()),
           "ANALYZE_PORT": str(analyze_port), "KEY_PREFIX": PREFIX, "QUEUE": PREFIX,
           "MAX_UPLOAD_BYTES": str(1 << 30), "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], name: str) -> None:
        with (workdir / f"{name}.log").open("wb") as log:
            procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=workdir))

    try:
        spawn(redis_server_args(redis_port, workdir), "redis")
        wait(lambda: _port_open(redis_port), 10, "redis-server")
        spawn([sys.executable, "-m", "logsig", "worker", "--concurrency", str(workers)],
              "worker")
        spawn([sys.executable, "-m", "logsig", "gateway"], "gateway")
        client = redis.Redis(port=redis_port)
        wait(lambda: client.hlen(f"{PREFIX}:rules") > 0 and _port_open(analyze_port), 60,
              "worker and gateway")
        client.close()
        yield Settings(gateway_host="127.0.0.1", analyze_port=analyze_port, read_timeout=60)
    except BaseException:
        for name in ("gateway", "worker"):  # the logs go with the temporary directory
            tail = (workdir / f"{name}.log").read_text(errors="replace").splitlines()[-30:]
            print(f"--- last lines of {name}.log", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _timed(fn: Callable[[], dict[str, Any]], repeat: int) -> tuple[list[float], dict[str, Any]]:
    runs, result = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return runs, result


def _summary(runs: list[float], lines: int) -> dict[str, Any]:
    med = statistics.median(runs)
    return {"seconds": runs, "median_s": med, "lines_per_s": lines / med}


def measure(path: Path, lines: int, workers: int, chunks: int, repeat: int) -> dict[str, Any]:
    engine = make_engine(load_rules())

    def single() -> dict[str, Any]:
        return finalize(analyze("logs", path.read_bytes(), engine, YEAR))

    single_runs, single_report = _timed(single, repeat)
    with cluster(path.parent, workers) as settings:
        warm = path.parent / "warm.log"
        warm.write_text("\n".join(generate_lines(2000, seed=1)) + "\n")
        submit(settings, str(warm), "logs", chunks, YEAR)  # workers are up, worker count known

        def distributed() -> dict[str, Any]:
            return submit(settings, str(path), "logs", chunks, YEAR)

        dist_runs, dist_report = _timed(distributed, repeat)
    job = dist_report.pop("job")
    single = _summary(single_runs, lines)
    dist = _summary(dist_runs, lines)
    return {"single": single, "distributed": {**dist, "chunks": job["chunks"]},
            "speedup": single["median_s"] / dist["median_s"],
            "identical_reports": dist_report == single_report,
            "matches": single_report["matches"]}


def main(argv: Sequence[str] | None = None) -> int:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="file size in lines")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--chunks", type=int, default=0,
                   help="chunks per job (default 0: the gateway's choice, max(4, workers))")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the median counts")
    p.add_argument("--quick", action="store_true", help="smoke run: 20000 lines, 1 run")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output file")
    args = p.parse_args(argv)
    lines = 20_000 if args.quick else args.lines
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="logsig-analyze-") as tmp:
        path = Path(tmp) / "traffic.log"
        path.write_text("\n".join(generate_lines(lines, seed=7)) + "\n")
        size = path.stat().st_size
        result = measure(path, lines, args.workers, args.chunks, repeat)
    report = {"file": {"lines": lines, "bytes": size, "source": "agents.generator"},
              "workers": args.workers, "repeat": repeat,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    s, d = result["single"], result["distributed"]
    print(f"file: {lines:,} lines, {size / 1e6:.1f} MB; {args.workers} worker processes, "
          f"{d['chunks']} chunks; median of {repeat}; {os.cpu_count()} CPUs")
    print(f"single process : {s['median_s']:7.2f} s  ({s['lines_per_s']:,.0f} lines/s)")
    print(f"distributed    : {d['median_s']:7.2f} s  ({d['lines_per_s']:,.0f} lines/s)")
    print(f"speed-up       : {result['speedup']:.2f}x   identical reports: "
          f"{result['identical_reports']}")
    return 0 if result["identical_reports"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``logsig demo``: the whole pipeline on one machine, end to end, then the results table.

Uses ``REDIS_URL`` when a server answers there, otherwise starts a private ``redis-server``
on a free loopback port. Starts a gateway, a prefork worker and two agents that follow log
files generated for the run, waits until every line is counted, prints the results and
shuts everything down with SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from agents.generator import generate_lines
from logsig.errors import LogsigError
from logsig.keys import Keys
from logsig.net import free_port
from logsig.settings import Settings

log = logging.getLogger(__name__)

WAIT_SECONDS = 300
INSTALL_HINT = ("redis-server is not installed and no Redis answers at REDIS_URL. Install it "
                "(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) "
                "or set REDIS_URL to a running server.")


class DemoError(LogsigError):
    """The demo could not run or did not see every line counted."""


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def _redis(settings: Settings, workdir: Path) -> Iterator[str]:
    if _redis_answers(settings.redis_url):
        log.info("using the Redis server at %s", settings.redis_url)
        yield settings.redis_url
        return
    if shutil.which("redis-server") is None:
        raise DemoError(INSTALL_HINT)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise DemoError(f"private redis-server did not start (see {workdir}/redis.log)")
            time.sleep(0.05)
        log.info("started a private redis-server on 127.0.0.1:%d", port)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class _Children:
    """The demo's child processes, each logging to its own file in the work directory."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self._workdir = workdir
        self._env = env
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, **env: str) -> None:
        logfile = open(self._workdir / f"{name}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen([sys.executable, "-m", "logsig", *args],
                                env={**self._env, **env}, stdout=logfile, stderr=logfile)
        logfile.close()
        self._procs.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 15) -> str:
        text = (self._workdir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *names: str, timeout: float = 30) -> dict[str, int | None]:
        """SIGTERM the named children (in order) and wait for each to exit."""
        codes: dict[str, int | None] = {}
        for name, proc in self._procs:
            if name in names and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self._procs:
            if name in names:
                try:
                    codes[name] = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes[name] = proc.wait(5)
        return codes


def _write_logs(workdir: Path, lines_per_agent: int) -> list[Path]:
    paths = []
    for n in (1, 2):
        path = workdir / f"app-{n}.log"
        with path.open("w", encoding="utf-8", newline="\n") as out:
            for line in generate_lines(lines_per_agent, seed=n):
                out.write(line + "\n")
        paths.append(path)
    return paths


def _wait_counted(client: redis.Redis, keys: Keys, target: int, children: _Children) -> float:
    started = time.monotonic()
    last_report = 0.0
    while True:
        counted = int(client.hget(keys.totals, "lines") or 0)
        now = time.monotonic()
        if counted >= target:
            return now - started
        children.check_alive()
        if now - last_report >= 2:
            log.info("counted %d of %d lines", counted, target)
            last_report = now
        if now - started > WAIT_SECONDS:
            raise DemoError(f"only {counted} of {target} lines counted after {WAIT_SECONDS}s")
        time.sleep(0.1)


def _run(settings: Settings, workdir: Path, redis_url: str, lines_per_agent: int) -> int:
    from workers.results import show

    settings = settings.replace(redis_url=redis_url, gateway_host="127.0.0.1",
                                gateway_port=free_port(), health_port=free_port(),
                                analyze_port=free_port())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(settings.key_prefix)
    baseline = int(client.hget(keys.totals, "lines") or 0)
    paths = _write_logs(workdir, lines_per_agent)
    children = _Children(workdir, {**settings.to_env(), "PYTHONUNBUFFERED": "1"})
    try:
        children.start("worker", "worker")
        children.start("gateway", "gateway")
        for n, path in enumerate(paths, 1):
            children.start(f"agent-{n}", "agent", str(path), "--name", f"demo-agent-{n}",
                           "--registry", str(workdir / f"registry-{n}.json"))
        total = baseline + lines_per_agent * len(paths)
        elapsed = _wait_counted(client, keys, total, children)
        log.info("all %d lines counted in %.1fs", total - baseline, elapsed)
        print()
        show(settings, as_json=False, limit=8)
    finally:
        codes = children.stop("agent-1", "agent-2")
        codes |= children.stop("gateway")
        codes |= children.stop("worker")
        client.close()
    bad = {name: code for name, code in codes.items() if code != 0}
    if bad:
        raise DemoError(f"children did not exit cleanly: {bad}")
    print(f"\ndemo finished: {lines_per_agent * len(paths)} lines, all counted; "
          f"logs of each component in {workdir}")
    return 0


def run(settings: Settings, lines_per_agent: int = 20_000) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="logsig-demo-"))
    with _redis(settings, workdir) as redis_url:
        return _run(settings, workdir, redis_url, lines_per_agent)

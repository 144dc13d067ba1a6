"""``logsig health``: each probe against a real service, and against nothing at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logsig.health import TIMEOUT_S, check, redact_url
from logsig.settings import Settings
from tests.conftest import Proc, RedisServer, free_port, logsig_cmd, wait_for_port, wait_until

# A probe may take TIMEOUT_S per step; anything far beyond that would stall a healthcheck.
PROBE_BUDGET_S = 3 * TIMEOUT_S + 2


def dead_port() -> int:
    """A loopback port with nothing listening on it (bound once, then released)."""
    return free_port()


def start_gateway(tmp_path: Path, redis_url: str, host: str = "127.0.0.1") -> tuple[Proc, Settings]:
    """A real gateway process; its health endpoint is what the probe reads."""
    settings = Settings(gateway_host=host, gateway_port=free_port(), health_port=free_port(),
                        redis_url=redis_url)
    env = {"GATEWAY_HOST": host, "GATEWAY_PORT": str(settings.gateway_port),
           "HEALTH_PORT": str(settings.health_port), "REDIS_URL": redis_url, "ANALYZE_PORT": "0"}
    proc = Proc(logsig_cmd("gateway"), env, tmp_path / f"gateway-{settings.gateway_port}.log")
    wait_for_port(settings.gateway_port, proc=proc.popen)
    return proc, settings


@pytest.fixture
def gateway(redis_server: RedisServer, tmp_path: Path) -> Iterator[Settings]:
    proc, settings = start_gateway(tmp_path, redis_server.url)
    yield settings
    proc.stop()


def run_check(settings: Settings, target: str, hostname: str | None = None) -> tuple[int, float]:
    start = time.monotonic()
    code = check(settings, target, hostname=hostname)
    return code, time.monotonic() - start


def test_redis_healthy(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_check(Settings(redis_url=redis_server.url), "redis")
    out, err = capsys.readouterr()
    assert code == 0
    assert out.count("\n") == 1 and out.startswith("redis: healthy")
    assert err == ""


def test_redis_unhealthy_on_closed_port(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{dead_port()}/0"
    code, elapsed = run_check(Settings(redis_url=url), "redis")
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("redis: unhealthy")
    assert "127.0.0.1" in err
    assert elapsed < PROBE_BUDGET_S


def test_redis_reason_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{dead_port()}/0"
    assert check(Settings(redis_url=url), "redis") == 1
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err
    assert "user:***@127.0.0.1" in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@redis:6379/1", "redis://:***@redis:6379/1"),
        ("rediss://u:pw@[::1]:6380", "rediss://u:***@[::1]:6380"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_gateway_healthy(gateway: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    wait_until(lambda: check(gateway, "gateway") == 0, 10, what="gateway healthy")
    expected = f"gateway: healthy: gateway at 127.0.0.1:{gateway.gateway_port} reports ok\n"
    assert capsys.readouterr().out.endswith(expected)


def test_gateway_bound_to_wildcard_is_probed_on_loopback(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # In the gateway container GATEWAY_HOST=0.0.0.0; the healthcheck must still find it.
    proc, settings = start_gateway(tmp_path, redis_server.url, host="0.0.0.0")
    try:
        wait_until(lambda: check(settings, "gateway") == 0, 10, what="gateway healthy")
    finally:
        proc.stop()


def test_gateway_without_redis_reports_itself_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, settings = start_gateway(tmp_path, f"redis://127.0.0.1:{dead_port()}/0")
    try:
        wait_until(lambda: "unhealthy" in proc.output(), 10, what="gateway to notice")
        code, elapsed = run_check(settings, "gateway")
    finally:
        proc.stop()
    assert code == 1 and elapsed < PROBE_BUDGET_S
    assert "reports unhealthy: Redis unreachable" in capsys.readouterr().err


def test_gateway_unhealthy_on_closed_port(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(gateway_port=dead_port(), health_port=dead_port())
    code, elapsed = run_check(settings, "gateway")
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("gateway: unhealthy: cannot reach the gateway (127.0.0.1:")
    assert elapsed < PROBE_BUDGET_S


def test_worker_unhealthy_when_no_worker_answers(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(redis_url=redis_server.url, key_prefix="test-health")
    code, elapsed = run_check(settings, "worker", hostname="logsig@nobody-here")
    _, err = capsys.readouterr()
    assert code == 1
    assert err == f"worker: unhealthy: no reply from logsig@nobody-here within {TIMEOUT_S:g}s\n"
    assert elapsed < PROBE_BUDGET_S


def test_worker_unhealthy_when_broker_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{dead_port()}/0")
    code, elapsed = run_check(settings, "worker")
    _, err = capsys.readouterr()
    assert code == 1
    node = f"logsig@{socket.gethostname()}"
    assert err.startswith(f"worker: unhealthy: broker unreachable, cannot ping {node}")
    assert elapsed < PROBE_BUDGET_S


WORKER_APP = """
    from logsig.celeryconf import make_celery
    from logsig.settings import Settings

    app = make_celery(Settings(redis_url={url!r}))
"""


@pytest.mark.slow
def test_worker_healthy_when_the_node_answers(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real Celery worker built from our shared config answers the probe's ping."""
    (tmp_path / "healthapp.py").write_text(textwrap.dedent(WORKER_APP.format(url=redis_server.url)))
    node = f"logsig@health-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "healthapp", "worker", "--pool", "solo",
             "-n", node, "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
             "--without-mingle"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        settings = Settings(redis_url=redis_server.url)
        deadline = time.monotonic() + 30
        code = 1
        while code != 0 and time.monotonic() < deadline and proc.poll() is None:
            code = check(settings, "worker", hostname=node)
        assert code == 0, log.read_text()
        assert capsys.readouterr().out.endswith(f"worker: healthy: {node} answered ping\n")
    finally:
        proc.terminate()
        proc.wait(15)


def test_cli_exit_codes(redis_server: RedisServer, tmp_path: Path) -> None:
    """The console command passes the probe's code on: 0 healthy, 1 unhealthy."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GATEWAY_PORT")}
    env_file = str(tmp_path / "absent.env")
    ok = subprocess.run(
        logsig_cmd("--env-file", env_file, "--redis-url", redis_server.url, "health", "redis"),
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert (ok.returncode, ok.stdout.startswith("redis: healthy")) == (0, True), ok.stderr
    bad = subprocess.run(
        logsig_cmd("--env-file", env_file, "health", "gateway"),
        env={**env, "GATEWAY_PORT": str(dead_port()), "HEALTH_PORT": str(dead_port())},
        capture_output=True, text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("gateway: unhealthy")


def test_unknown_target_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown health target 'agent'"):
        check(Settings(), "agent")

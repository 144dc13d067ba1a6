"""``logsig health {redis,gateway,worker}``: one bounded probe per component.

Made for container healthchecks: each probe gives up after ``TIMEOUT_S`` seconds, prints
one line saying what it found and returns an exit code (0 healthy, 1 unhealthy). Nothing
here exits the process; the CLI passes the code on.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import redis
from kombu.exceptions import KombuError

from logsig.celeryconf import make_celery
from logsig.secrets import redact_url
from logsig.settings import Settings

__all__ = ["HEALTHY", "TARGETS", "TIMEOUT_S", "UNHEALTHY", "check"]

HEALTHY, UNHEALTHY = 0, 1
TIMEOUT_S = 2.0

# A server bound to a wildcard address is reached through loopback on the same host.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}

# (healthy?, one-line reason)
Result = tuple[bool, str]


def check(settings: Settings, target: str, hostname: str | None = None) -> int:
    """Probe ``target`` ("redis", "gateway" or "worker"); print one line; return 0 or 1."""
    try:
        probe = TARGETS[target]
    except KeyError:
        raise ValueError(f"unknown health target {target!r}; expected one of "
                         f"{', '.join(TARGETS)}") from None
    ok, reason = probe(settings, hostname)
    if ok:
        print(f"{target}: healthy: {reason}")
        return HEALTHY
    print(f"{target}: unhealthy: {reason}", file=sys.stderr)
    return UNHEALTHY


def _redis(settings: Settings, hostname: str | None = None) -> Result:
    where = redact_url(settings.redis_url)
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return False, f"PING {where} failed: {exc}"
    finally:
        client.close()
    return True, f"PING {where} answered"


def _gateway(settings: Settings, hostname: str | None = None) -> Result:
    """The gateway's own view (Redis reachable, publishes succeeding), then its Forward port."""
    host = _WILDCARDS.get(settings.gateway_host, settings.gateway_host)
    where = f"{host}:{settings.health_port}"
    try:
        with socket.create_connection((host, settings.health_port), timeout=TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            status = sock.makefile("rb").readline(1024).decode("utf-8", "replace").strip()
        with socket.create_connection((host, settings.gateway_port), timeout=TIMEOUT_S):
            pass
    except OSError as exc:
        return False, f"cannot reach the gateway ({where} / port {settings.gateway_port}): {exc}"
    if status != "ok":
        return False, f"gateway at {host}:{settings.gateway_port} reports {status or 'nothing'}"
    return True, f"gateway at {host}:{settings.gateway_port} reports ok"


def _worker(settings: Settings, hostname: str | None = None) -> Result:
    node = hostname or f"logsig@{socket.gethostname()}"
    # Probe the broker first: with Redis down, Celery would retry for several seconds.
    broker_ok, broker_reason = _redis(settings)
    if not broker_ok:
        return False, f"broker unreachable, cannot ping {node}: {broker_reason}"
    app = make_celery(settings)
    try:
        replies = app.control.ping(destination=[node], timeout=TIMEOUT_S)
    except (KombuError, redis.RedisError, OSError) as exc:
        return False, f"ping {node} failed: {exc}"
    finally:
        app.close()
    if any(node in reply for reply in replies or []):
        return True, f"{node} answered ping"
    return False, f"no reply from {node} within {TIMEOUT_S:g}s"


TARGETS: dict[str, Callable[[Settings, str | None], Result]] = {
    "redis": _redis,
    "gateway": _gateway,
    "worker": _worker,
}

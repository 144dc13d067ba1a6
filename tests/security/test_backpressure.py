"""A slow Redis makes the gateway stop reading, not buffer without bound (MAX_INFLIGHT_PUBLISHES).

Redis is paused for writes (``CLIENT PAUSE ... WRITE``) while a client floods fire-and-forget
events: the gateway's publishes stall, it stops reading its sockets once
``BATCH_SIZE x (MAX_INFLIGHT_PUBLISHES + 2)`` lines are held, the client's ``send`` blocks,
and the gateway's memory stays flat. When Redis answers again, every event sent arrives.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

from logsig import forward
from tests.celery_queue import queued_lines
from tests.conftest import (
    Proc,
    RedisServer,
    free_port,
    logsig_cmd,
    rss_kib,
    wait_for_port,
    wait_until,
)
from tests.security.report import record

PAUSE_MS = 4000
EVENT = forward.encode_message("flood", 1.0, {"log": "x" * 900})





def test_slow_redis_stops_the_gateway_reading(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port), "HEALTH_PORT": "0",
           "ANALYZE_PORT": "0", "ACK_MODE": "published", "BATCH_SIZE": "100",
           "TIMEOUT": "0.05", "MAX_INFLIGHT_PUBLISHES": "1", "QUEUE": "logsig-bp"}
    gateway = Proc(logsig_cmd("gateway"), env, tmp_path / "gateway.log")
    try:
        wait_for_port(port, proc=gateway.popen)
        rss_before = rss_kib(gateway.popen.pid)
        redis_client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        sent = 0
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(0.5)
            deadline = time.monotonic() + PAUSE_MS / 2000
            try:
                while time.monotonic() < deadline and sent < 200_000:
                    sock.sendall(EVENT)
                    sent += 1
            except TimeoutError:
                pass  # send blocked: the gateway stopped reading
            blocked = time.monotonic() < deadline
            rss_paused = rss_kib(gateway.popen.pid)
            wait_until(lambda: len(queued_lines(redis_client, "logsig-bp")) == sent,
                       30, what=f"all {sent} events queued after the pause")
    finally:
        gateway.stop()
    grown_mib = (rss_paused - rss_before) / 1024
    print(f"\nsent {sent} events ({sent * len(EVENT) / 1e6:.1f} MB) before send blocked; "
          f"gateway RSS grew {grown_mib:.1f} MiB while Redis was paused")
    assert blocked, "the gateway kept reading while Redis was paused"
    # 300 lines held by the gateway plus socket buffers, not the whole flood.
    assert sent < 20_000
    assert grown_mib < 32
    record("flood while Redis is slow", sent, 0,
           f"reading stopped after {sent} events; +{grown_mib:.0f} MiB; all delivered")

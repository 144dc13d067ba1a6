"""Is the gateway able to do its job? Redis must answer and publishes must succeed.

A gateway that cannot reach Redis still accepts connections (agents retry and are not acked),
so "the port is open" is not health. The monitor pings Redis every ``interval`` seconds and
hears about every publish; the health endpoint answers one line from that state, which is
what ``logsig health gateway`` and the container healthcheck read.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.background import stop_tasks

log = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(self, redis_url: str, interval: float = 2.0) -> None:
        self._client = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=interval, socket_timeout=interval
        )
        self._interval = interval
        self._problem: str | None = "not checked yet"
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        return "ok" if self._problem is None else f"unhealthy: {self._problem}"

    def _set(self, problem: str | None) -> None:
        if problem != self._problem:
            if problem is None:
                log.info("healthy again: Redis answers and publishes succeed")
            else:
                log.warning("unhealthy: %s", problem)
        self._problem = problem

    def publish_failed(self, reason: str) -> None:
        self._set(f"publish failed: {reason}")

    def publish_succeeded(self) -> None:
        if self._problem is not None and self._problem.startswith("publish failed"):
            self._set(None)

    async def check_once(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._set(f"Redis unreachable: {exc}")
        else:
            if self._problem is not None and not self._problem.startswith("publish failed"):
                self._set(None)

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="health")

    async def close(self) -> None:
        await stop_tasks([self._task], "health")
        await self._client.aclose()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The health endpoint: one status line, then close."""
        try:
            writer.write(f"{self.status}\n".encode())
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

"""End-to-end acknowledgements: ack a chunk when a worker has recorded it, not before.

With ``ACK_MODE=counted`` every batch names this gateway (``reply_to``); the workers' result
script pushes the ids of the chunks it recorded (new or duplicate) to this gateway's
``keys.counted`` list in the same atomic step as the counters, and this listener pops them
and releases the acks. A chunk lost anywhere after its publish (a worker or Redis dying at
the wrong moment) is then never acked, so its agent re-sends it under the same id and it is
counted once. Until then the agent holds it, which also carries the workers' backpressure
back to the agents.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.background import stop_tasks
from logsig.keys import Keys

log = logging.getLogger(__name__)

POP_BATCH = 1000
PURGE_INTERVAL = 30.0


class AckSink(Protocol):
    """Where an acknowledgement goes: the connection that sent the chunk."""

    @property
    def closed(self) -> bool: ...

    def ack(self, chunk_id: str) -> None: ...

    def publish_failed(self, reason: str) -> None: ...


class CountedAcks:
    def __init__(self, redis_url: str, keys: Keys) -> None:
        self.gateway_id = uuid.uuid4().hex
        self._key = keys.counted(self.gateway_id)
        self._client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._waiting: dict[str, list[AckSink]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def expect(self, waiters: Iterable[tuple[AckSink, str]]) -> None:
        """These chunks are being published: ack each when its id comes back."""
        for sink, chunk_id in waiters:
            self._waiting.setdefault(chunk_id, []).append(sink)

    def forget(self, waiters: Iterable[tuple[AckSink, str]]) -> None:
        """These chunks were not published after all: expect nothing for them."""
        for sink, chunk_id in waiters:
            sinks = self._waiting.get(chunk_id, [])
            if sink in sinks:
                sinks.remove(sink)
            if not sinks:
                self._waiting.pop(chunk_id, None)

    def _release(self, chunk_ids: Iterable[str]) -> None:
        for chunk_id in chunk_ids:
            for sink in self._waiting.pop(chunk_id, ()):
                sink.ack(chunk_id)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                popped = await self._client.blpop([self._key], timeout=1)
                if popped:
                    more = await self._client.lpop(self._key, POP_BATCH) or []
                    self._release([popped[1], *more])
                delay = 0.1
            except (RedisError, OSError) as exc:
                log.warning("cannot read recorded chunk ids (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _purge(self) -> None:
        """Forget waiters whose connection is gone: their agents re-send on a new one."""
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            for chunk_id in list(self._waiting):
                alive = [s for s in self._waiting[chunk_id] if not s.closed]
                if alive:
                    self._waiting[chunk_id] = alive
                else:
                    del self._waiting[chunk_id]

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(), name="counted-acks"),
                       loop.create_task(self._purge(), name="counted-acks-purge")]

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every published chunk has been acked, or ``timeout`` runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._waiting and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not self._waiting

    async def close(self) -> None:
        await stop_tasks(self._tasks, "counted-acks")
        await self._client.aclose()

"""Publish a batch as one Celery task, from the event loop, in one Redis round trip.

The batch itself goes to Redis as one packed string (``keys.batch``) and the task carries
only its key (a claim check): kombu base64-encodes task bodies inside a JSON envelope, and
the worker's parent process decodes and pipes each body to a pool process, so a body of a
thousand lines would be copied and recoded half a dozen times.

The string and the task message (built by :mod:`logsig.celery_message`, as kombu's Redis
transport would queue it) go in one ``MULTI``/``EXEC``: a task never exists without its
batch, and a failed publish leaves neither. No thread pool and no kombu producer are
involved; ``MAX_INFLIGHT_PUBLISHES`` bounds the transactions in flight.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis
import redis.asyncio as aredis

from logsig.batch import TASK_NAME, Batch
from logsig.celery_message import TaskMessages
from logsig.keys import Keys
from logsig.settings import Settings

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The batch could not be handed to Redis; its chunks must not be acknowledged."""


class _Batches:
    """Key, task message and expiry of a stored batch (shared by both senders)."""

    def __init__(self, settings: Settings) -> None:
        self.keys = Keys(settings.key_prefix)
        self.messages = TaskMessages(TASK_NAME, settings.queue)
        self.queue = settings.queue
        self.ttl = settings.chunk_ttl

    def stage(self, pipe: Any, packed: bytes) -> str:
        """Queue storing ``packed`` under a new key and its task on ``pipe`` (a transaction,
        sync or async); returns the key."""
        key = self.keys.batch(uuid.uuid4().hex)
        pipe.set(key, packed, ex=self.ttl)
        pipe.lpush(self.queue, self.messages.envelope([key]))
        return key


class BatchSender:
    """The blocking form, for tools, tests and benchmarks that publish batches themselves."""

    def __init__(self, settings: Settings) -> None:
        self._batches = _Batches(settings)
        self._redis = redis.Redis.from_url(settings.redis_url)

    def send(self, packed: bytes) -> str:
        """Store ``packed`` (see :meth:`Batch.pack`) and queue its task; returns its key."""
        with self._redis.pipeline(transaction=True) as pipe:
            key = self._batches.stage(pipe, packed)
            pipe.execute()
        return key

    def close(self) -> None:
        self._redis.close()


class RedisPublisher:
    """The gateway's publisher: one transaction per batch, awaited on the event loop."""

    def __init__(self, settings: Settings) -> None:
        self._batches = _Batches(settings)
        self._redis = aredis.Redis.from_url(settings.redis_url)
        self._slots = asyncio.Semaphore(settings.max_inflight_publishes)

    async def publish(self, batch: Batch) -> None:
        """Return once the batch and its task are in Redis; raise :class:`PublishError`."""
        packed = batch.pack()
        try:
            async with self._slots, self._redis.pipeline(transaction=True) as pipe:
                self._batches.stage(pipe, packed)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()

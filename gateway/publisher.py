"""Publish a batch as one Celery task without blocking the event loop.

The batch itself goes to Redis as one packed string (``keys.batch``) and the task carries
only its key (a claim check): kombu base64-encodes task bodies inside a JSON envelope, and
the worker's parent process decodes and pipes each body to a pool process, so a body of a
thousand lines would be copied and recoded half a dozen times. The string is stored before
the task is published, so a task never points at a batch that is not there yet.

kombu's Redis producer is blocking, so publishes run on a small thread pool; the number of
threads is the bound on publishes in flight (``MAX_INFLIGHT_PUBLISHES``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis

from logsig.batch import TASK_NAME, Batch
from logsig.celeryconf import make_celery
from logsig.keys import Keys
from logsig.settings import Settings

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 1.0}


class PublishError(Exception):
    """The batch could not be handed to Redis; its chunks must not be acknowledged."""


class BatchSender:
    """Stores a packed batch and publishes its scan task (blocking; one call per batch)."""

    def __init__(self, settings: Settings) -> None:
        self._app = make_celery(settings)
        self._redis = redis.Redis.from_url(settings.redis_url)
        self._keys = Keys(settings.key_prefix)
        self._queue = settings.queue
        self._ttl = settings.chunk_ttl

    def send(self, packed: bytes) -> str:
        """Store ``packed`` (see :meth:`Batch.pack`) and queue its task; returns its key."""
        key = self._keys.batch(uuid.uuid4().hex)
        self._redis.set(key, packed, ex=self._ttl)
        self._app.send_task(TASK_NAME, args=[key], queue=self._queue, retry=True,
                            retry_policy=RETRY_POLICY)
        return key

    def close(self) -> None:
        self._app.close()
        self._redis.close()


class CeleryPublisher:
    def __init__(self, settings: Settings) -> None:
        self._sender = BatchSender(settings)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_inflight_publishes, thread_name_prefix="publish"
        )

    async def publish(self, batch: Batch) -> None:
        """Return once the batch and its task are in Redis; raise :class:`PublishError`."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._sender.send, batch.pack())
        except Exception as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._sender.close()

"""Publish a batch as one Celery task without blocking the event loop.

kombu's Redis producer is blocking, so publishes run on a small thread pool; the number of
threads is the bound on publishes in flight (``MAX_INFLIGHT_PUBLISHES``).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from logsig.batch import TASK_NAME, Batch
from logsig.celeryconf import make_celery
from logsig.settings import Settings

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 1.0}


class PublishError(Exception):
    """The batch could not be handed to Redis; its chunks must not be acknowledged."""


class CeleryPublisher:
    def __init__(self, settings: Settings) -> None:
        self._app = make_celery(settings)
        self._queue = settings.queue
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_inflight_publishes, thread_name_prefix="publish"
        )

    def _send(self, payload: list[object]) -> None:
        self._app.send_task(
            TASK_NAME, args=[payload], queue=self._queue, retry=True, retry_policy=RETRY_POLICY
        )

    async def publish(self, batch: Batch) -> None:
        """Return once the task is in Redis; raise :class:`PublishError` otherwise."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._send, batch.encode())
        except Exception as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._app.close()

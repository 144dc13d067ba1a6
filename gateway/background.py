"""Stopping the gateway's background tasks (Redis readers) without hanging the shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0  # seconds a cancelled background task may take to finish


async def stop_tasks(tasks: Iterable[asyncio.Task[None] | None], what: str) -> None:
    """Cancel ``tasks`` and wait for them, at most :data:`STOP_TIMEOUT`.

    Bounded because a Redis command cancelled while redis-py is still connecting can swallow
    the cancellation and never return; a shutdown must not wait for it.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
    if stuck:
        log.warning("%d %s task(s) did not stop within %.0fs; leaving them", len(stuck), what,
                    STOP_TIMEOUT)

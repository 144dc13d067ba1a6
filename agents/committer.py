"""Writes the registry as chunks go out and acks come back.

A chunk of file lines is handed to the client only after :meth:`Committer.commit` wrote
its intent (the write-ahead rule); acks are written once per event-loop pass
(:meth:`Committer.soon`), however many arrived in it. A commit appends to the registry's
log (:mod:`agents.journal`): one ``write`` of about 10 us, done right here on the event
loop because handing it to a thread costs more than the write. It survives ``kill -9``
(the page cache does). Every :data:`REGISTRY_FSYNC_INTERVAL` seconds while there are
changes, and once more at exit, a checkpoint replaces the snapshot with fsync, which
survives a power loss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agents.journal import Journal
from agents.registry import Registry

log = logging.getLogger(__name__)

REGISTRY_FSYNC_INTERVAL = 1.0
"""Seconds between checkpoints (the fsynced writes); appends in between are not fsynced."""


class Committer:
    """Keeps ``registry``'s files up to date."""

    def __init__(self, registry: Registry, fsync_interval: float = REGISTRY_FSYNC_INTERVAL
                 ) -> None:
        self.registry = registry
        self.fsync_interval = fsync_interval
        self._journal = Journal(registry.path)
        self._unsynced = False
        self._scheduled = False
        self._failing = False

    def commit(self) -> None:
        """Append every change made so far to the log, now."""
        self._scheduled = False
        if self.registry.dirty:
            self._do(self._journal.append, self.registry.take_log())
            self._unsynced = True

    def soon(self) -> None:
        """Commit at the end of this event-loop pass (once, for all acks read in it)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.commit)

    def checkpoint(self) -> None:
        """Write the whole state durably and empty the log, if anything is not durable yet."""
        if self.registry.dirty or self._unsynced:
            self._unsynced = not self._do(self._journal.checkpoint, self.registry.snapshot())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval)
            self.checkpoint()

    def close(self) -> None:
        """A last checkpoint; then the log's file is closed."""
        try:
            self.checkpoint()
        finally:
            self._journal.close()

    def _do(self, job: Callable[[bytes], None], data: bytes) -> bool:
        try:
            job(data)
        except OSError as exc:
            if not self._failing:  # once per failure streak: this can happen per chunk
                log.error("cannot write registry %s: %s (until it works again, a restart "
                          "may lose or repeat lines)", self.registry.path, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("registry %s written again", self.registry.path)
            self._failing = False
        return True

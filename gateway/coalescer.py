"""Group commit: coalesce chunks per tag into batches and release their acks together.

A batch is published when it holds ``BATCH_SIZE`` lines or ``max_chars`` characters of text
(``MAX_FRAME_BYTES``: limits count lines, and 10,000 lines of 64 KiB would pass Redis's
512 MB value limit), or ``TIMEOUT`` seconds after its first line arrived. Chunks whose client
waits for an ack are also published at once when no publish of that tag is in flight
(natural batching): a client that sends one event and waits for its ack is never held for
``TIMEOUT``, and under load the batches grow by themselves while the previous publish is on
its way.

Memory is bounded: once ``high_water`` lines are buffered or being published, ``add`` waits,
which stops the calling connection from reading its socket (TCP backpressure).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from gateway.acks import AckSink, CountedAcks
from gateway.publisher import PublishError
from logsig.batch import Batch, Chunk

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, batch: Batch) -> None: ...


class PublishObserver(Protocol):
    def publish_succeeded(self) -> None: ...

    def publish_failed(self, reason: str) -> None: ...


@dataclass
class _TagBuffer:
    chunks: list[Chunk] = field(default_factory=list)
    waiters: list[tuple[AckSink, str]] = field(default_factory=list)
    lines: int = 0
    chars: int = 0
    inflight: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    def __init__(
        self,
        publisher: Publisher,
        batch_size: int,
        timeout: float,
        high_water: int,
        observer: PublishObserver | None = None,
        counted: CountedAcks | None = None,
        max_chars: int = 0,
    ) -> None:
        self._publisher = publisher
        self._observer = observer
        self._counted = counted
        self._batch_size = batch_size
        self._max_chars = max_chars or 1 << 62
        self._timeout = timeout
        self._high_water = high_water
        self._buffers: dict[str, _TagBuffer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_lines = 0  # buffered plus being published
        self._room = asyncio.Condition()
        self.published_batches = 0

    @property
    def pending_lines(self) -> int:
        return self._pending_lines

    async def wait_for_room(self) -> None:
        """Return once the gateway holds fewer than ``high_water`` lines.

        Connections call it before reading, so a full gateway stops reading every socket
        instead of decoding one more frame per connection. A release wakes one waiter,
        which passes the turn on while room remains: with thousands of connections waiting,
        waking them all at every publish would cost more than the publish.
        """
        if self._has_room():
            return
        async with self._room:
            await self._room.wait_for(self._has_room)
            if self._has_room():
                self._room.notify(1)

    def _has_room(self) -> bool:
        return self._pending_lines < self._high_water

    async def add(self, tag: str, chunk: Chunk, sink: AckSink | None) -> None:
        """Buffer a chunk; waits while the gateway already holds ``high_water`` lines."""
        await self.wait_for_room()
        buf = self._buffers.setdefault(tag, _TagBuffer())
        count = chunk.line_count
        buf.chunks.append(chunk)
        buf.lines += count
        buf.chars += chunk.text_size
        self._pending_lines += count
        if sink is not None:
            buf.waiters.append((sink, chunk.id))
        if (buf.lines >= self._batch_size or buf.chars >= self._max_chars
                or (buf.waiters and buf.inflight == 0)):
            self._flush(tag)
        elif buf.timer is None:
            buf.timer = asyncio.get_running_loop().call_later(self._timeout, self._flush, tag)

    def _flush(self, tag: str) -> None:
        buf = self._buffers[tag]
        if buf.timer is not None:
            buf.timer.cancel()
            buf.timer = None
        if not buf.chunks:
            return
        reply_to = self._counted.gateway_id if self._counted is not None else None
        batch, waiters = Batch(tag, buf.chunks, reply_to), buf.waiters
        buf.chunks, buf.waiters, buf.lines, buf.chars = [], [], 0, 0
        buf.inflight += 1
        task = asyncio.get_running_loop().create_task(self._publish(tag, batch, waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, tag: str, batch: Batch, waiters: list[tuple[AckSink, str]]) -> None:
        if self._counted is not None:
            # Registered before the publish: a fast worker may report the chunks recorded
            # before this coroutine even resumes.
            self._counted.expect(waiters)
        try:
            await self._publisher.publish(batch)
        except PublishError as exc:
            log.error("publish of %d lines (tag %r) failed, not acknowledging %d chunks: %s",
                      batch.line_count, tag, len(waiters), exc)
            if self._observer is not None:
                self._observer.publish_failed(str(exc))
            if self._counted is not None:
                self._counted.forget(waiters)
            for sink, _ in waiters:
                sink.publish_failed(str(exc))
        else:
            self.published_batches += 1
            if self._observer is not None:
                self._observer.publish_succeeded()
            if self._counted is None:
                for sink, chunk_id in waiters:
                    sink.ack(chunk_id)
        finally:
            await self._release(tag, batch.line_count)

    async def _release(self, tag: str, lines: int) -> None:
        buf = self._buffers[tag]
        buf.inflight -= 1
        self._pending_lines -= lines
        async with self._room:
            self._room.notify(1)
        if buf.waiters and buf.inflight == 0:
            self._flush(tag)
        elif not buf.chunks and buf.inflight == 0:
            del self._buffers[tag]  # tags are client-chosen: keep no state for idle ones

    def flush_all(self) -> None:
        for tag in list(self._buffers):
            self._flush(tag)

    async def drain(self, timeout: float) -> bool:
        """Publish everything buffered and wait for it; False if ``timeout`` ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._buffers or self._tasks:
            self.flush_all()
            if not self._tasks:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

"""The agent's pipeline and lifecycle: sources -> queue -> batcher -> client -> registry.

Memory is bounded end to end: the queue holds at most :data:`QUEUE_BLOCKS` blocks, the
batcher one open batch, the client ``agent_max_inflight`` chunks. When the gateway is
slow the client's window fills, the shipper stops taking blocks, the queue fills, and the
sources wait in ``await sink(block)`` instead of reading on.

Exactly once, with the workers' per-chunk dedup: a chunk of file lines is recorded as an
intent in the registry before it is first sent, and resent under the same id until acked,
also by a restarted agent (``agents.replay``); a chunk whose file cannot be read back for
now is tried again, backing off, while new lines flow. Lines from stdin or the generator cannot be
read again, so their chunks are never mixed with file lines and are resent only while
this process lives: a killed agent loses the ones not acked yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from agents.batcher import Batcher, halve
from agents.block import Block, Source
from agents.client import Chunk, ForwardClient, new_chunk_id
from agents.committer import Committer
from agents.encoder import FrameEncoder
from agents.intent import Intent
from agents.registry import Registry
from agents.replay import ReplayDeferred, rebuild
from logsig.settings import Settings

log = logging.getLogger(__name__)

QUEUE_BLOCKS = 16
REPLAY_RETRY_FIRST, REPLAY_RETRY_MAX = 0.5, 30.0
"""Seconds before a chunk that could not be read back is tried again: doubling, capped."""


class Agent:
    """Runs the sources until they end or :meth:`stop`, and ships what they read."""

    def __init__(self, settings: Settings, sources: Sequence[Source], registry: Registry) -> None:
        self.settings = settings
        self.sources = list(sources)
        self.registry = registry
        self.lines_read = 0
        self.lines_acked = 0
        self.failed_sources = 0
        self._queue: asyncio.Queue[Block | None] = asyncio.Queue(QUEUE_BLOCKS)
        self._batcher: Batcher[Block] = Batcher(settings.batch_size, settings.timeout)
        self._encoder = FrameEncoder(settings.tag, settings.agent_name)
        self._client = ForwardClient(settings, self._on_ack)
        self._committer = Committer(registry)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._deferred: list[Intent] = []
        self._retry_in = REPLAY_RETRY_FIRST
        self._retry_at = 0.0
        self._source_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def unacked_lines(self) -> int:
        return self.lines_read - self.lines_acked

    def stop(self) -> None:
        """Begin a graceful shutdown; a second call gives up waiting for acks."""
        if self._stop.is_set():
            log.warning("second stop request: not waiting for acks any longer")
            self._force.set()
        self._stop.set()

    async def run(self) -> int:
        """Ship until done; 0 if every line read was acked, else 1 (the count is logged)."""
        self._client.start()
        committer = asyncio.create_task(self._committer.run(), name="registry-commit")
        shipper = asyncio.create_task(self._ship(), name="shipper")
        self._source_tasks = [asyncio.create_task(self._run_source(s)) for s in self.sources]
        self._tasks = [*self._source_tasks, shipper, committer]
        finish = asyncio.create_task(self._finish(shipper), name="finish")
        try:
            await self._wait(finish)
        finally:
            await self._close(finish)
        if self._deferred:
            log.error("%d chunk(s) of %d line(s) could not be read back to resend; they stay "
                      "in the registry for the next start", len(self._deferred),
                      sum(i.lines for i in self._deferred))
        if self.unacked_lines:
            log.error("%d line(s) read but not acked by the gateway", self.unacked_lines)
        if self.unacked_lines or self._deferred or self.failed_sources:
            return 1
        log.info("done: %d line(s) shipped and acked", self.lines_acked)
        return 0

    async def _wait(self, finish: asyncio.Task[None]) -> None:
        """Until the sources have ended and all is acked, or a stop request has been honoured.

        Only finite sources end by themselves; files are followed until a stop request.
        """
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({stopping, finish}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not finish.done():
            timeout = self.settings.shutdown_timeout
            log.info("stopping: flushing the open batch, waiting up to %.1fs for acks", timeout)
            for source in self.sources:
                source.stop()
            forced = asyncio.create_task(self._force.wait())
            await asyncio.wait({finish, forced}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
        if finish.done():
            finish.result()  # re-raise a crash of the shipper

    async def _finish(self, shipper: asyncio.Task[None]) -> None:
        """Sources done -> flush the batcher -> all chunks acked."""
        await asyncio.gather(*self._source_tasks)
        await self._queue.put(None)
        await shipper
        await self._client.wait_acked()

    async def _run_source(self, source: Source) -> None:
        try:
            await source.run(self._put)
        except Exception:
            self.failed_sources += 1
            log.exception("source %r failed; the others go on", source)

    async def _put(self, block: Block) -> None:
        await self._queue.put(block)
        self.lines_read += len(block)

    async def _ship(self) -> None:
        """Resend what a previous run left unacked, then queue -> batcher -> client."""
        clock = asyncio.get_running_loop().time
        await self._replay(self.registry.pending(), clock)
        batcher = self._batcher
        while True:
            try:
                async with asyncio.timeout_at(await self._next_deadline(clock)):
                    block = await self._queue.get()
            except TimeoutError:
                await self._send(batcher.due(clock()))
                continue
            if block is None:
                await self._send(batcher.flush())
                return
            for batch in batcher.add(block, clock()):
                await self._send(batch)

    async def _next_deadline(self, clock: Callable[[], float]) -> float | None:
        """The batcher's deadline, or the next try of deferred chunks if sooner (those due
        are tried first)."""
        if self._deferred and clock() >= self._retry_at:
            await self._replay(self._deferred, clock)
        deadline = self._batcher.deadline
        if not self._deferred:
            return deadline
        return self._retry_at if deadline is None else min(deadline, self._retry_at)

    async def _replay(self, intents: list[Intent], clock: Callable[[], float]) -> None:
        """Each pending intent, rebuilt from its files, goes out under its own id (first at
        start, before any new line); those that cannot be read now wait for the next try."""
        deferred: list[Intent] = []
        reason: ReplayDeferred | None = None
        for intent in intents:
            try:
                kept, blocks, entries = rebuild(intent, self._encoder)
            except ReplayDeferred as exc:
                deferred.append(intent)
                reason = reason or exc
                continue
            if kept != intent:
                lost = intent.lines - kept.lines
                log.warning("chunk %s: %d of its %d line(s) cannot be replayed%s", intent.chunk,
                            lost, intent.lines, "; dropping it" if not blocks else "")
                if blocks:
                    self.registry.put(kept)
                else:
                    self.registry.ack(intent.chunk)
                self._committer.commit()
            if not blocks:
                continue
            log.info("resending chunk %s (%d line(s)) left unacked", intent.chunk, kept.lines)
            self.lines_read += kept.lines
            frame = self._encoder.frame(blocks, entries, intent.chunk)
            await self._client.reserve()
            self._client.put(Chunk(intent.chunk, frame, kept.lines))
        self._deferred = deferred
        if not deferred:
            self._retry_in = REPLAY_RETRY_FIRST
            return
        self._retry_at = clock() + self._retry_in
        log.warning("%d chunk(s) of %d line(s) cannot be read back now (%s); trying again in "
                    "%.1fs", len(deferred), sum(i.lines for i in deferred), reason,
                    self._retry_in)
        self._retry_in = min(self._retry_in * 2, REPLAY_RETRY_MAX)

    async def _send(self, batch: list[Block] | None) -> None:
        """Ship ``batch``; file lines and other lines go in separate chunks (see above)."""
        if not batch:
            return
        files = [b for b in batch if b.key is not None]
        if files and len(files) < len(batch):
            await self._send_chunk(files)
            await self._send_chunk([b for b in batch if b.key is None])
        else:
            await self._send_chunk(batch)

    async def _send_chunk(self, blocks: list[Block]) -> None:
        """Encode ``blocks`` as one chunk (halved if too big) and hand it to the client."""
        chunk_id = new_chunk_id()
        entries = [self._encoder.entries(b) for b in blocks]
        lines = sum(map(len, blocks))
        frame = self._encoder.frame(blocks, entries, chunk_id)
        if len(frame) > self.settings.max_frame_bytes and lines > 1:
            for half in halve(blocks):  # the gateway would refuse it: MAX_FRAME_BYTES
                await self._send_chunk(half)
            return
        chunk = Chunk(chunk_id, frame, lines)
        await self._client.reserve()
        if blocks[0].key is None:
            self._client.put(chunk)
            return
        self.registry.add(Intent.of(chunk_id, blocks, entries))
        self._committer.commit()  # the intent is on disk before the chunk is on the wire
        self._client.put(chunk)

    def _on_ack(self, chunk: Chunk) -> None:
        self.lines_acked += chunk.lines
        if self.registry.ack(chunk.id):
            self._committer.soon()

    async def _close(self, finish: asyncio.Task[None]) -> None:
        """Cancel what still runs, drop the connection, make the registry durable."""
        tasks = [finish, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()
        self._committer.close()

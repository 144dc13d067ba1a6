"""The analysis exchange on ``ANALYZE_PORT``: upload a whole file, get one report back.

The wire protocol is in :mod:`logsig.jobwire`. Per connection: read the request (within
``READ_TIMEOUT``); refuse it (``bad_request``, ``too_large``) or accept it; stream the upload
straight into Redis chunk keys, cut on line boundaries (:class:`workers.analysis.Splitter`),
so the gateway holds about one megabyte per upload, not the file; publish the chunk tasks
as one Celery group; wait for the workers' answers in the job's results hash, looking when
a worker's note arrives through the shared inbox and every few seconds anyway, sending a
progress message as chunks finish; fold the partials in chunk order and send the report.

Nothing blocks the event loop: Celery publishing, merging and finalizing run on a small
shared thread pool, and waiting costs no thread at all. A job fails with one clear error
(``chunk_failed``, ``timeout``, ``unavailable``, ``incomplete_upload``, ``shutting_down``)
and never returns a partial report. A client that disconnects cancels its job. The job's
chunk keys are deleted whatever happens (their TTL covers a crashed gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from gateway.analyze_jobs import (
    CHECK_EVERY_S,
    ChunkStore,
    Dispatcher,
    ResultInbox,
    connect,
    key_ttl,
)
from logsig.errors import ProtocolError
from logsig.jobwire import (
    BAD_REQUEST,
    CHUNK_FAILED,
    INCOMPLETE,
    INTERNAL,
    MAX_REQUEST_BYTES,
    SHUTTING_DOWN,
    TIMEOUT,
    TOO_LARGE,
    UNAVAILABLE,
    AnalysisError,
    ChunkResult,
    ChunkTask,
    Reply,
    Request,
    encode_frame,
    read_frame,
)
from logsig.keys import Keys
from logsig.settings import Settings
from workers.analysis import Splitter, finalize, merge_all

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
FLUSH_BYTES = 1024 * 1024  # upload bytes buffered per job before one APPEND to Redis
POOL_THREADS = 4


@dataclass
class Job:
    id: str
    request: Request
    planned: int  # N: at most this many chunks
    chunks: int = 0  # chunks that got bytes
    started: float = 0.0


class AnalysisServer:
    """The listener and the jobs in flight; started and stopped by the gateway."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        keys = Keys(settings.key_prefix)
        self._pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="analysis")
        self._client = connect(settings)
        self._store = ChunkStore(self._client, keys, key_ttl(settings))
        self._inbox = ResultInbox(self._client, keys)
        self._dispatcher = Dispatcher(settings, self._pool)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.jobs_done = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen on ANALYZE_PORT. If it is taken, log why and go on without analysis: the
        gateway's first job, ingestion, must not stop over its second."""
        s = self._settings
        try:
            self._server = await asyncio.start_server(
                self._handle, s.gateway_host, s.analyze_port, reuse_address=True,
                limit=READ_SIZE)
        except OSError as exc:
            log.error("analysis jobs disabled: cannot listen on %s:%d (ANALYZE_PORT): %s",
                      s.gateway_host, s.analyze_port, exc)
            return
        self._inbox.start()
        log.info("analysis listening on port %d (MAX_UPLOAD_BYTES=%d, ANALYZE_TIMEOUT=%ss)",
                 self.port, s.max_upload_bytes, s.analyze_timeout)

    async def close(self) -> None:
        """Stop accepting; jobs in flight end with ``shutting_down``; release everything."""
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._inbox.close()
        await self._client.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._release)

    def _release(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._dispatcher.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            reply = await self._reply(reader, writer, f"{peer[0]}:{peer[1]}")
            if reply is not None:
                await _send(writer, reply)
        except asyncio.CancelledError:
            _send_nowait(writer, Reply.failure(SHUTTING_DOWN, "the gateway is stopping"))
            raise
        except ConnectionError:
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _reply(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> Reply | None:
        """The final message for this client (None if it has gone)."""
        try:
            return await self._exchange(reader, writer)
        except AnalysisError as exc:
            log.warning("analysis for %s failed: %s", peer, exc)
            return Reply.failure(exc.code, exc.message)
        except ProtocolError as exc:
            log.warning("analysis request from %s refused: %s", peer, exc.reason)
            return Reply.failure(BAD_REQUEST, exc.reason)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("analysis client %s left: %s", peer, exc or type(exc).__name__)
            return None
        except Exception as exc:  # a bug: the client still gets an answer, the log the trace
            log.exception("analysis for %s failed unexpectedly", peer)
            return Reply.failure(INTERNAL, f"{type(exc).__name__}: {exc}")

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> Reply:
        s = self._settings
        try:
            async with asyncio.timeout(s.read_timeout):
                request = Request.decode(await read_frame(reader, MAX_REQUEST_BYTES))
        except TimeoutError:
            raise AnalysisError(BAD_REQUEST, f"no request within {s.read_timeout}s") from None
        if request.size > s.max_upload_bytes:
            raise AnalysisError(TOO_LARGE, f"{request.size} bytes is more than the "
                                           f"{s.max_upload_bytes} bytes MAX_UPLOAD_BYTES allows")
        planned = request.chunks or await self._dispatcher.auto_chunks()
        job = Job(uuid.uuid4().hex, request, planned, started=time.monotonic())
        await _send(writer, Reply("accepted", job=job.id, total=planned))
        try:
            return await self._run(job, reader, writer)
        finally:
            await self._forget(job)

    async def _run(self, job: Job, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> Reply:
        try:
            job.chunks = await self._receive(job, reader)
        except redis.RedisError as exc:
            raise AnalysisError(UNAVAILABLE, f"cannot store the upload in Redis: {exc}") from exc
        parts = await self._compute(job, reader, writer) if job.chunks else []
        profile = job.request.profile
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(self._pool, _consolidate, profile, parts)
        except ProtocolError as exc:
            raise AnalysisError(CHUNK_FAILED, f"a worker sent malformed statistics: "
                                              f"{exc.reason}") from exc
        seconds = round(time.monotonic() - job.started, 3)
        report["job"] = {"id": job.id, "name": job.request.name, "chunks": job.chunks,
                         "seconds": seconds}
        self.jobs_done += 1
        log.info("analysis job %s (%s, %d bytes, %d chunks) done in %.2fs", job.id, profile,
                 job.request.size, job.chunks, seconds)
        return Reply("report", job=job.id, report=report)

    async def _receive(self, job: Job, reader: asyncio.StreamReader) -> int:
        """Stream ``size`` bytes into the chunk keys; returns how many chunks got bytes."""
        size = job.request.size
        splitter = Splitter(size, job.planned)
        remaining, current, buf = size, 0, bytearray()
        while remaining:
            try:
                async with asyncio.timeout(self._settings.read_timeout):
                    data = await reader.read(min(READ_SIZE, remaining))
            except TimeoutError:
                data = b""
            if not data:
                raise AnalysisError(INCOMPLETE, f"upload ended or stalled after "
                                                f"{size - remaining} of {size} bytes")
            remaining -= len(data)
            for index, piece in splitter.feed(data):
                if index != current or len(buf) >= FLUSH_BYTES:
                    await self._flush(job, current, buf)
                current = index
                buf += piece
        await self._flush(job, current, buf)
        return splitter.chunks_seen

    async def _flush(self, job: Job, index: int, buf: bytearray) -> None:
        if buf:
            await self._store.append(job.id, index, bytes(buf))
            buf.clear()

    async def _compute(self, job: Job, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> list[ChunkResult]:
        """Publish the chunk tasks as one group and wait for every answer."""
        req, store = job.request, self._store
        specs = [ChunkTask(job.id, i, req.profile, store.key(job.id, i), store.results_key(job.id),
                           self._inbox.key, req.year, key_ttl(self._settings))
                 for i in range(job.chunks)]
        queue = self._inbox.subscribe(job.id)
        watch = asyncio.create_task(_watch_eof(reader, queue))
        try:
            try:
                await self._dispatcher.publish(specs)
            except Exception as exc:  # kombu/redis errors of any kind: the job cannot run
                raise AnalysisError(UNAVAILABLE, f"cannot publish the chunk tasks: "
                                                 f"{type(exc).__name__}: {exc}") from exc
            await _send(writer, Reply("dispatched", job=job.id, total=job.chunks))
            return await self._collect(job, queue, writer)
        finally:
            watch.cancel()
            self._inbox.unsubscribe(job.id)

    async def _collect(self, job: Job, queue: asyncio.Queue[int | None],
                       writer: asyncio.StreamWriter) -> list[ChunkResult]:
        """Read answers from the results hash whenever a note comes, and every few seconds."""
        parts: dict[int, ChunkResult] = {}
        limit = self._settings.analyze_timeout
        deadline = asyncio.get_running_loop().time() + limit
        while len(parts) < job.chunks:
            if not await _wake_up(queue, deadline):
                raise AnalysisError(TIMEOUT, f"{len(parts)} of {job.chunks} chunks finished "
                                             f"within ANALYZE_TIMEOUT={limit}s; are workers "
                                             "running?")
            missing = [i for i in range(job.chunks) if i not in parts]
            try:
                found = await self._store.answers(job.id, missing)
            except redis.RedisError as exc:
                log.warning("analysis job %s: cannot read answers (%s); will retry", job.id, exc)
                continue
            for index, result in sorted(found.items()):
                if result.error or not result.payload:
                    raise AnalysisError(CHUNK_FAILED, f"chunk {index + 1} of {job.chunks}: "
                                                      f"{result.error}")
                parts[index] = result
            if found:
                await _send(writer, Reply("progress", job=job.id, done=len(parts),
                                          total=job.chunks))
        return [parts[i] for i in range(job.chunks)]

    async def _forget(self, job: Job) -> None:
        try:
            await self._store.delete(job.id, job.planned)
        except redis.RedisError as exc:
            log.warning("analysis job %s: chunk keys left to expire: %s", job.id, exc)


def _consolidate(profile: str, results: list[ChunkResult]) -> dict[str, Any]:
    """Decode, merge in chunk order and finalize (on the pool: CPU work for big partials)."""
    return finalize(merge_all(profile, (r.partial() for r in results)))


async def _wake_up(queue: asyncio.Queue[int | None], deadline: float) -> bool:
    """Wait for a note or the next periodic check; False once the deadline has passed."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        return False
    try:
        async with asyncio.timeout(min(CHECK_EVERY_S, left)):
            note = await queue.get()
    except TimeoutError:
        return True
    if note is None:
        raise ConnectionResetError("client closed the connection mid-job")
    while not queue.empty():  # several notes at once: one read of the hash serves them all
        if queue.get_nowait() is None:
            raise ConnectionResetError("client closed the connection mid-job")
    return True


async def _watch_eof(reader: asyncio.StreamReader, queue: asyncio.Queue[int | None]) -> None:
    """A client sends nothing after its upload: EOF (or any byte) means it has gone."""
    with contextlib.suppress(ConnectionError):
        await reader.read(1)
    queue.put_nowait(None)


async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
    writer.write(encode_frame(reply.encode()))
    await writer.drain()


def _send_nowait(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if not writer.is_closing():
        writer.write(encode_frame(reply.encode()))

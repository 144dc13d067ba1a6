"""The gateway's side of analysis jobs in Redis and Celery, without a thread per client.

* :class:`ChunkStore` appends an upload's chunks to Redis keys (``Keys.analysis_chunk``) as
  the bytes arrive, reads the workers' answers from the job's results hash
  (``Keys.analysis_results``) and deletes both when the job ends.
* :class:`Dispatcher` publishes a job's chunk tasks as one Celery group and counts the worker
  processes; kombu is blocking, so both run on a small shared thread pool.
* :class:`ResultInbox` is one ``BLPOP`` loop per gateway on its inbox list
  (``Keys.analysis_inbox``) that wakes up the job a worker note is about: however many
  clients wait, they cost one Redis connection and no thread. The notes only make jobs
  react at once; a job also looks at its results hash every few seconds, so a lost note
  (or an inbox loop in trouble) delays it and never loses an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.asyncio as aredis
from celery import group

from gateway.background import stop_tasks
from logsig.celeryconf import make_celery
from logsig.errors import ProtocolError
from logsig.jobwire import TASK_NAME, ChunkResult, ChunkTask, decode_note
from logsig.keys import Keys
from logsig.settings import Settings

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 1.0}
MIN_AUTO_CHUNKS = 4
WORKER_CACHE_S = 30.0
INSPECT_TIMEOUT_S = 0.5
BLPOP_TIMEOUT_S = 1
CHECK_EVERY_S = 2.0  # a waiting job reads its results hash at least this often
KEY_GRACE_S = 60


class ChunkStore:
    """Chunk bytes in Redis, with a TTL so a crashed gateway leaves nothing for ever."""

    def __init__(self, client: aredis.Redis, keys: Keys, ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl

    def key(self, job: str, index: int) -> str:
        return self._keys.analysis_chunk(job, index)

    async def append(self, job: str, index: int, data: bytes) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.append(self.key(job, index), data)
        pipe.expire(self.key(job, index), self._ttl)
        await pipe.execute()

    def results_key(self, job: str) -> str:
        return self._keys.analysis_results(job)

    async def answers(self, job: str, indices: list[int]) -> dict[int, ChunkResult]:
        """The answers stored so far for these chunks (undecodable ones are errors)."""
        if not indices:
            return {}
        raw = await self._client.hmget(self.results_key(job), [str(i) for i in indices])
        out = {}
        for index, data in zip(indices, raw, strict=True):
            if data is None:
                continue
            try:
                out[index] = ChunkResult.decode(data)
            except ProtocolError as exc:
                out[index] = ChunkResult(job, index, error=f"malformed answer: {exc.reason}")
        return out

    async def delete(self, job: str, chunks: int) -> None:
        keys = [self.key(job, i) for i in range(chunks)]
        await self._client.delete(*keys, self.results_key(job))


class Dispatcher:
    """Celery publishing and worker inspection on a bounded pool (never the event loop)."""

    def __init__(self, settings: Settings, pool: ThreadPoolExecutor) -> None:
        self._app = make_celery(settings)
        self._queue = settings.queue
        self._pool = pool
        self._workers: tuple[float, int] = (0.0, 0)  # (monotonic time seen, processes)
        self._refreshing: asyncio.Task[None] | None = None

    async def publish(self, specs: list[ChunkTask]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._publish, specs)

    def _publish(self, specs: list[ChunkTask]) -> None:
        sigs = [self._app.signature(TASK_NAME, args=[s.encode()], queue=self._queue)
                for s in specs]
        group(sigs, app=self._app).apply_async(retry=True, retry_policy=RETRY_POLICY)

    async def auto_chunks(self) -> int:
        """The worker processes that answer a ping, but at least 4.

        The count is cached; once stale it is refreshed in the background while jobs go on
        with the previous count, so only the very first job waits for the ping.
        """
        seen_at = self._workers[0]
        if seen_at == 0.0:
            await self._refresh()
        elif time.monotonic() - seen_at > WORKER_CACHE_S and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        return max(MIN_AUTO_CHUNKS, self._workers[1])

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        procs = await loop.run_in_executor(self._pool, self._count_processes)
        self._workers = (time.monotonic(), procs)

    def _refreshed(self, _task: asyncio.Task[None]) -> None:
        self._refreshing = None

    def _count_processes(self) -> int:
        try:
            stats = self._app.control.inspect(timeout=INSPECT_TIMEOUT_S).stats() or {}
        except Exception as exc:  # any broker trouble: fall back to the minimum, say why
            log.warning("cannot count worker processes (%s); using %d chunks", exc,
                        MIN_AUTO_CHUNKS)
            return 0
        return sum(int(s.get("pool", {}).get("max-concurrency", 0)) for s in stats.values())

    def close(self) -> None:
        self._app.close()


class ResultInbox:
    """Wakes up the jobs waiting on this gateway when a worker notes an answer for them."""

    def __init__(self, client: aredis.Redis, keys: Keys) -> None:
        self.gateway_id = uuid.uuid4().hex[:16]
        self.key = keys.analysis_inbox(self.gateway_id)
        self._client = client
        self._jobs: dict[str, asyncio.Queue[int | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="analysis-inbox")

    def subscribe(self, job: str) -> asyncio.Queue[int | None]:
        """A queue of the job's chunk indices as notes arrive (None: the client has gone)."""
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._jobs[job] = queue
        return queue

    def unsubscribe(self, job: str) -> None:
        self._jobs.pop(job, None)

    async def _run(self) -> None:
        while True:
            try:
                item = await self._client.blpop([self.key], timeout=BLPOP_TIMEOUT_S)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("analysis inbox: Redis unreachable (%s); retrying in 1s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # never let the loop die: jobs would only see periodic checks
                log.exception("analysis inbox: unexpected error; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            if item is not None:
                self._route(item[1])

    def _route(self, data: bytes) -> None:
        try:
            job, index = decode_note(data)
        except ProtocolError as exc:
            log.error("analysis inbox: dropping a malformed note: %s", exc)
            return
        queue = self._jobs.get(job)
        if queue is not None:
            queue.put_nowait(index)

    async def close(self) -> None:
        await stop_tasks([self._task], "analysis inbox")


def connect(settings: Settings) -> aredis.Redis:
    """An asyncio client returning bytes (chunks and results are binary)."""
    return aredis.Redis.from_url(settings.redis_url, health_check_interval=30)


def key_ttl(settings: Settings) -> int:
    return int(settings.analyze_timeout) + KEY_GRACE_S


"""The analysis Celery task: read one chunk from Redis, analyze it, push the partial back.

Delivery is at least once (acks are late and a killed worker child requeues its task), so a
chunk may be analyzed twice; the results hash keeps the first answer per chunk index. The task
never raises for a bad chunk: it answers with an error, so the waiting client learns why at
once instead of at the job deadline. Only Redis connection errors are retried.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery, Task

from logsig.errors import ProtocolError
from logsig.jobwire import TASK_NAME, ChunkResult, ChunkTask, encode_note
from logsig.settings import Settings
from workers.analysis.report import analyze
from workers.engine import Engine

log = logging.getLogger(__name__)


class AnalysisContext:
    """Per-process state: a bytes Redis client and the engine, both made on first use."""

    def __init__(self, settings: Settings, engine: Any) -> None:
        self._settings = settings
        self._engine = engine  # a callable returning the process's engine (built once)
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self._settings.redis_url,
                                                health_check_interval=30)
        return self._client

    def engine(self) -> Engine:
        return self._engine()  # type: ignore[no-any-return]


def run_chunk(ctx: AnalysisContext, spec: ChunkTask) -> ChunkResult:
    """Analyze one stored chunk; an error result (never an exception) for a bad one."""
    data = ctx.client.get(spec.chunk_key)
    if data is None:
        return ChunkResult(spec.job, spec.index, error="chunk data is gone (job finished, "
                                                        "cancelled or expired)")
    started = time.perf_counter()
    try:
        engine = ctx.engine() if spec.profile == "logs" else None
        partial = analyze(spec.profile, data, engine, spec.year)  # type: ignore[arg-type]
    except Exception as exc:  # logged with its traceback and reported to the client
        log.exception("analysis job %s chunk %d failed", spec.job, spec.index)
        return ChunkResult(spec.job, spec.index, error=f"{type(exc).__name__}: {exc}")
    log.info("analysis job %s chunk %d: %d bytes in %.2fs", spec.job, spec.index, len(data),
             time.perf_counter() - started)
    return ChunkResult.success(spec.job, spec.index, partial)


def reply(client: redis.Redis, spec: ChunkTask, result: ChunkResult) -> None:
    """Store the answer (the first one per chunk wins), then wake the gateway up."""
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(spec.results_key, str(spec.index), result.encode())
    pipe.expire(spec.results_key, spec.ttl)
    pipe.rpush(spec.inbox_key, encode_note(spec.job, spec.index))
    pipe.expire(spec.inbox_key, spec.ttl)
    pipe.execute()


def register(app: Celery, settings: Settings, engine: Any) -> Task:
    """Register the analysis task; ``engine()`` returns the worker process's engine."""
    ctx = AnalysisContext(settings, engine)

    @app.task(name=TASK_NAME, autoretry_for=(redis.ConnectionError, redis.TimeoutError),
              retry_backoff=True, retry_backoff_max=10, max_retries=10)
    def analyze_chunk(spec_obj: Any) -> None:
        try:
            spec = ChunkTask.decode(spec_obj)
        except ProtocolError as exc:
            log.error("dropping malformed analysis task: %s", exc)
            return
        reply(ctx.client, spec, run_chunk(ctx, spec))

    return analyze_chunk

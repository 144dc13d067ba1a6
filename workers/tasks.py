"""The scan task: decode a batch, scan all its lines in one engine call, record the results.

:func:`process_batch` is the whole pipeline without Celery, so tests and benchmarks can run
it directly; :func:`register` wraps it in the Celery task the gateway publishes by name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject

from logsig.batch import TASK_NAME, Batch
from logsig.errors import ProtocolError
from logsig.settings import Settings
from workers.aggregate import aggregate, flatten
from workers.engine import Engine, make_engine
from workers.rules import Rule, load_rules
from workers.store import ResultStore, connect

log = logging.getLogger(__name__)

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError included
RETRY_INITIAL, RETRY_MAX = 0.1, 5.0


@dataclass(slots=True)
class WorkerState:
    """What a worker process builds once and reuses for every batch."""

    rules: tuple[Rule, ...]
    engine: Engine
    store: ResultStore


def build_state(settings: Settings, rules: Sequence[Rule] | None = None) -> WorkerState:
    """Load rules (unless given), compile the engine and open the Redis client."""
    loaded = tuple(load_rules(settings.rules_path) if rules is None else rules)
    started = time.perf_counter()
    engine = make_engine(loaded)
    log.info("%s ready with %d rules in %.2fs", type(engine).__name__, len(loaded),
             time.perf_counter() - started)
    return WorkerState(loaded, engine, ResultStore(connect(settings), settings))


def process_batch(state: WorkerState, batch_obj: Any, now: float | None = None) -> tuple[int, int]:
    """Scan one encoded batch and record it; returns (new chunks, duplicate chunks)."""
    batch = Batch.decode(batch_obj)
    lines, spans = flatten(batch)
    pairs = state.engine.scan(lines)
    deltas = aggregate(batch, spans, pairs, lines, state.rules)
    fresh, dup = state.store.record(deltas, now, reply_to=batch.reply_to)
    log.debug("batch: %d lines, %d matches, %d new / %d duplicate chunks",
              len(lines), len(pairs), fresh, dup)
    return fresh, dup


class WorkerContext:
    """Per-process worker state, built in ``worker_process_init`` (or on first use)."""

    def __init__(self, settings: Settings, rules: Sequence[Rule] | None = None) -> None:
        self.settings = settings
        self.rules = None if rules is None else tuple(rules)
        self._state: WorkerState | None = None

    def on_process_init(self, **_: Any) -> None:
        self.state()

    def state(self) -> WorkerState:
        if self._state is None:
            self._state = build_state(self.settings, self.rules)
        return self._state


def process_until_stored(context: WorkerContext, batch_obj: Any) -> None:
    """Record the batch, waiting out a Redis outage in this process.

    Celery's own retry would publish a new message, which fails while Redis is down, and the
    original would then be rejected without requeue: lost. Retrying here is safe because
    results are idempotent per chunk. If Redis stays away for half the visibility timeout,
    the message is rejected with requeue (or, with the broker gone too, stays unacked in
    Redis and comes back with the visibility sweep).
    """
    deadline = time.monotonic() + context.settings.visibility_timeout / 2
    delay = RETRY_INITIAL
    while True:
        try:
            process_batch(context.state(), batch_obj)
            return
        except ProtocolError as exc:
            # Retrying cannot fix a malformed message: log it and drop it.
            log.error("dropping malformed batch: %s", exc)
            return
        except REDIS_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise Reject(exc, requeue=True) from exc
            log.warning("Redis unavailable (%s); retrying this batch in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


def register(app: Celery, context: WorkerContext) -> Task:
    """Register the scan task under the name the gateway publishes to."""

    @app.task(name=TASK_NAME)
    def scan_batch(batch_obj: Any) -> None:
        process_until_stored(context, batch_obj)

    return scan_batch

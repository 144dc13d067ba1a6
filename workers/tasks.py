"""The scan task: fetch a batch, scan all its lines in one engine call, record the results.

The task carries only the Redis key of the packed batch (see :mod:`logsig.batch`).
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
from logsig.gc_tuning import tune_gc
from logsig.malloc_tuning import tune_malloc
from logsig.settings import Settings
from workers.aggregate import Flat, aggregate, flatten
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
    return WorkerState(loaded, engine, ResultStore(connect(settings), settings, loaded))


def scan_flat(engine: Engine, flat: Flat) -> tuple[list[tuple[int, int]], bool]:
    """(line, rule) pairs of the whole batch: one engine call over its joined buffer.

    The flag says the pairs name lines by their offset in ``flat.text`` rather than by
    index (``Engine.scan_offsets``: cheaper when the buffer is plain ASCII).
    """
    if not flat.count:
        return [], False
    if flat.text is None:
        return engine.scan(flat.all_lines()), False
    data = flat.text.encode("utf-8", "surrogatepass")
    found = engine.scan_offsets(data)
    if found is not None:
        return found, True
    return engine.scan_buffer(data), False


def process_batch(state: WorkerState, batch: Batch, now: float | None = None,
                  stored_as: str | None = None) -> tuple[int, int]:
    """Scan one batch and record it; returns (new chunks, duplicate chunks).

    ``stored_as`` is the batch's key, deleted by the same script that records it.
    """
    flat = flatten(batch)
    pairs, by_offset = scan_flat(state.engine, flat)
    deltas = aggregate(batch, flat, pairs, state.rules, by_offset=by_offset)
    fresh, dup = state.store.record(deltas, now, reply_to=batch.reply_to, stored_as=stored_as)
    log.debug("batch: %d lines, %d matches, %d new / %d duplicate chunks",
              flat.count, len(pairs), fresh, dup)
    return fresh, dup


def process_stored(state: WorkerState, key: str) -> None:
    """Fetch the batch stored under ``key`` and process it.

    A key that is gone belongs to a batch already recorded (the task was delivered again
    after its script ran) or, after ``CHUNK_TTL``, to one that waited too long; either way
    there is nothing left to do.
    """
    if not state.store.is_batch_key(key):
        raise ProtocolError(f"task argument {key!r} is not a batch key")
    data = state.store.fetch(key)
    if data is None:
        log.info("batch %s is gone (recorded already, or expired): nothing to do", key)
        return
    try:
        batch = Batch.unpack(data)
    except ProtocolError:
        state.store.discard(key)
        raise
    process_batch(state, batch, stored_as=key)


class WorkerContext:
    """Per-process worker state, built in ``worker_process_init`` (or on first use)."""

    def __init__(self, settings: Settings, rules: Sequence[Rule] | None = None) -> None:
        self.settings = settings
        self.rules = None if rules is None else tuple(rules)
        self._state: WorkerState | None = None

    def on_process_init(self, **_: Any) -> None:
        self.state()
        tune_gc()  # after the engine is built: its database and rules are frozen with it
        tune_malloc()

    def state(self) -> WorkerState:
        if self._state is None:
            self._state = build_state(self.settings, self.rules)
        return self._state


def process_until_stored(context: WorkerContext, key: Any) -> None:
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
            process_stored(context.state(), key)
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
    def scan_batch(key: Any) -> None:
        process_until_stored(context, key)

    return scan_batch

"""Read the batches a gateway queued in Redis, as a worker would see them (no worker needed)."""

from __future__ import annotations

import base64
import json

import msgpack
import redis

from logsig.batch import TASK_NAME, Batch


def queued_batches(client: redis.Redis, queue: str) -> list[Batch]:
    """Each queued task's batch, fetched from the key the task carries (oldest first)."""
    batches = []
    for raw in client.lrange(queue, 0, -1)[::-1]:  # kombu LPUSHes; oldest last
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == TASK_NAME
        assert envelope["content-type"] == "application/x-msgpack"
        args, _kwargs, _embed = msgpack.unpackb(base64.b64decode(envelope["body"]), raw=False)
        (key,) = args
        stored = client.execute_command("GET", key, NEVER_DECODE=True)
        batches.append(Batch.unpack(stored))
    return batches


def queued_lines(client: redis.Redis, queue: str) -> list[str]:
    return [line for b in queued_batches(client, queue) for c in b.chunks for line in c.lines()]

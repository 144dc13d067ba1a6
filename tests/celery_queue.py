"""Read the batches a gateway queued in Redis, as a worker would see them (no worker needed)."""

from __future__ import annotations

import base64
import json

import msgpack
import redis

from logsig.batch import TASK_NAME, Batch


def queued_batches(client: redis.Redis, queue: str) -> list[Batch]:
    batches = []
    for raw in client.lrange(queue, 0, -1)[::-1]:  # kombu LPUSHes; oldest last
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == TASK_NAME
        assert envelope["content-type"] == "application/x-msgpack"
        args, _kwargs, _embed = msgpack.unpackb(base64.b64decode(envelope["body"]), raw=False)
        batches.append(Batch.decode(args[0]))
    return batches


def queued_lines(client: redis.Redis, queue: str) -> list[str]:
    return [line for b in queued_batches(client, queue) for c in b.chunks
            for s in c.segments for line in s.lines]

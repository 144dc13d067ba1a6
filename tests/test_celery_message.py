"""The gateway's hand-built task message against Celery's own, on the installed versions."""

from __future__ import annotations

import base64
import json

import msgpack
import redis

from logsig.batch import TASK_NAME
from logsig.celery_message import TaskMessages
from logsig.celeryconf import make_celery
from logsig.settings import Settings

QUEUE = "logsig-msg"
# Values that differ per message or per process by design.
VARYING = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"),
           ("properties", "correlation_id"), ("properties", "delivery_tag")}


def _celery_envelope(redis_server, client: redis.Redis) -> dict:  # type: ignore[no-untyped-def]
    app = make_celery(Settings(redis_url=redis_server.url, queue=QUEUE))
    try:
        app.send_task(TASK_NAME, args=["logsig:batch:abc"], queue=QUEUE)
    finally:
        app.close()
    (raw,) = client.lrange(QUEUE, 0, -1)
    return json.loads(raw)


def test_envelope_matches_send_task_field_by_field(redis_server,  # type: ignore[no-untyped-def]
                                                   redis_client: redis.Redis) -> None:
    theirs = _celery_envelope(redis_server, redis_client)
    ours = json.loads(TaskMessages(TASK_NAME, QUEUE).envelope(["logsig:batch:abc"]))
    assert set(ours) == set(theirs)
    for part in ("headers", "properties"):
        # Celery adds a reply_to for results; tasks here ignore results.
        assert set(ours[part]) == set(theirs[part]) - {"reply_to"}
        for field, value in ours[part].items():
            if (part, field) not in VARYING:
                assert value == theirs[part][field], (part, field)
    for field in ("content-encoding", "content-type"):
        assert ours[field] == theirs[field]
    assert msgpack.unpackb(base64.b64decode(ours["body"])) == msgpack.unpackb(
        base64.b64decode(theirs["body"]))
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"][
        "correlation_id"]


def test_every_message_has_its_own_ids() -> None:
    messages = TaskMessages(TASK_NAME, QUEUE)
    a, b = (json.loads(messages.envelope(["k"])) for _ in range(2))
    assert a["headers"]["id"] != b["headers"]["id"]
    assert a["properties"]["delivery_tag"] != b["properties"]["delivery_tag"]

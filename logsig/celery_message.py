"""Celery task messages (protocol 2) as kombu's Redis transport queues them, built directly.

The gateway publishes one task per batch, and ``app.send_task`` spends about a millisecond
of Python per call (task options, routing, a new connection from the pool, the argument
preview, JSON and base64): at a few hundred batches per second that is more CPU than
decoding the lines. The message itself is small and documented (Celery's "Message Protocol"
v2 inside kombu's JSON envelope with a base64 body), so the gateway builds it here and
``LPUSH``-es it in the same Redis transaction that stores the batch, from the event loop.

``tests/test_celery_message.py`` checks the envelope field by field against what
``send_task`` writes with the installed Celery, and a real worker consumes it in every
end-to-end test.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

import msgpack

# The embed part of a protocol 2 body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class TaskMessages:
    """Builds the queued form of ``task_name(*args)`` messages for one queue."""

    def __init__(self, task_name: str, queue: str) -> None:
        self.task_name = task_name
        self.queue = queue
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"

    def envelope(self, args: list[Any]) -> bytes:
        """The JSON string kombu's Redis transport keeps in the queue's list."""
        task_id = str(uuid.uuid4())
        body = msgpack.packb([args, {}, _EMBED], use_bin_type=True)
        return json.dumps({
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "binary",
            "content-type": "application/x-msgpack",
            "headers": {
                "lang": "py", "task": self.task_name, "id": task_id, "shadow": None,
                "eta": None, "expires": None, "group": None, "group_index": None,
                "retries": 0, "timelimit": [None, None], "root_id": task_id,
                "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}",
                "origin": self._origin, "ignore_result": None,
                "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }, separators=(",", ":")).encode("ascii")

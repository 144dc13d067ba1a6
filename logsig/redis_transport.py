"""kombu's Redis transport with one crash fixed: closing a channel after the connection died.

When Redis goes away while a worker holds prefetched messages, kombu closes the channel and
tries to push those messages back; that needs a new connection pool, built from connection
details the lost connection has already dropped, and the resulting ``AttributeError`` is not
a connection error, so Celery stops with an "unrecoverable error" (and can hang while
stopping). Raising a connection error instead lets kombu ignore it as it intends: the
messages stay in Redis's unacked set and the visibility sweep delivers them again.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel

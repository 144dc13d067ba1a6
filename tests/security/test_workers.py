"""Workers refuse a pickle-serialized task pushed straight into the Redis queue."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import redis
from celery import Celery

from logsig.batch import TASK_NAME
from logsig.keys import Keys
from tests.conftest import Proc, RedisServer, logsig_cmd, wait_until
from tests.security.report import record

pytestmark = pytest.mark.slow
QUEUE = "logsig-pickle"


class Exploit:
    """Unpickling this runs ``os.mkdir(marker)``: proof of code execution if it ever happens."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def test_a_pickle_task_is_rejected_and_never_executed(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    env = {"REDIS_URL": redis_server.url, "QUEUE": QUEUE, "HEALTH_PORT": "0"}
    worker = Proc(logsig_cmd("worker", "--concurrency", "1"), env, tmp_path / "worker.log")
    try:
        wait_until(lambda: redis_client.hlen(Keys("logsig").rules) > 0, 30, what="worker")
        # An attacker's own Celery app (pickle allowed on its side) writes into our queue.
        evil = Celery("evil", broker=redis_server.url)
        evil.conf.task_serializer = "pickle"
        evil.send_task(TASK_NAME, args=[Exploit(str(marker))], queue=QUEUE, serializer="pickle")
        evil.close()
        wait_until(lambda: "disallowed" in worker.output().lower(), 30,
                   what="the worker to log the refusal")
        wait_until(lambda: redis_client.llen(QUEUE) == 0, 10, what="the message consumed")
        time.sleep(0.5)
        assert not marker.exists(), "the pickle payload ran"
        assert worker.popen.poll() is None, "the worker died"
        lines = int(redis_client.hget(Keys("logsig").totals, "lines") or 0)
        assert lines == 0
    finally:
        worker.stop()
    record("pickle task in the Redis queue", 1, int(not marker.exists()),
           "ContentDisallowed, never unpickled")


def test_the_queue_message_really_was_pickle(redis_server: RedisServer,
                                             redis_client: redis.Redis) -> None:
    """Guard for the test above: the message it pushes is what we think it is."""
    evil = Celery("evil", broker=redis_server.url)
    evil.send_task(TASK_NAME, args=[1], queue="logsig-probe", serializer="pickle")
    evil.close()
    envelope = json.loads(redis_client.lpop("logsig-probe"))
    assert envelope["content-type"] == "application/x-python-serialize"

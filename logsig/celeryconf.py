"""The Celery configuration shared by the gateway (producer) and the workers (consumer).

The gateway publishes by task name only (``send_task``) and never imports worker code; both
sides build their app here so serializer, queue and broker options cannot drift apart.
"""

from __future__ import annotations

from celery import Celery

from logsig.settings import Settings


def celery_config(settings: Settings) -> dict[str, object]:
    return {
        "broker_url": settings.redis_url,
        "broker_transport": "logsig.redis_transport:Transport",
        "broker_connection_retry_on_startup": True,
        # Safe serializers only: a pickle message is refused, never executed.
        "task_serializer": "msgpack",
        "accept_content": ["msgpack", "json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        # At-least-once: a task is acked after it ran; a killed worker child requeues it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": _transport_options(settings.visibility_timeout),
        "task_default_queue": settings.queue,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


def _transport_options(visibility_timeout: int) -> dict[str, int]:
    """Sweep for tasks of dead workers often enough to notice them soon after they expire.

    kombu's default sweep runs about every 100 s (interval 10 s, every 10th call), far later
    than a short visibility timeout; a sweep is one cheap sorted-set range query. The sweep's
    mutex is held for a few intervals at most: a worker killed while holding it (default 300
    s) would otherwise stop every sweep that long. Two sweeps overlapping can only deliver a
    message twice, which counts once.
    """
    interval = max(1, min(10, visibility_timeout // 4))
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 3 * interval,
    }


def make_celery(settings: Settings, main: str = "logsig") -> Celery:
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app

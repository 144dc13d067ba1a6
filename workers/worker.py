"""``logsig worker``: validate the rules, publish their metadata, run a prefork Celery worker.

Rules are checked before Celery starts, so a bad pack fails fast with exit code 2 and a
message naming the file and rule. SIGTERM is Celery's warm shutdown: running tasks finish,
unacknowledged ones stay on the broker (acks are late).
"""

from __future__ import annotations

import logging

import redis

from logsig.errors import RuleError
from logsig.malloc_tuning import tune_malloc
from logsig.settings import Settings
from workers.app import create_app
from workers.engine import backtracking_risks
from workers.rules import Rule, load_rules
from workers.store import ResultStore, connect

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
DEFAULT_NODE = "logsig@%h"


def worker_argv(settings: Settings, hostname: str | None = None) -> list[str]:
    """The ``celery worker`` command line for these settings."""
    return ["worker", "--pool=prefork", f"--concurrency={settings.worker_concurrency}",
            f"--queues={settings.queue}", f"--hostname={hostname or DEFAULT_NODE}",
            f"--loglevel={settings.log_level.upper()}", "--without-gossip", "--without-mingle"]


def _publish(settings: Settings, rules: list[Rule]) -> None:
    client = connect(settings)
    try:
        ResultStore(client, settings).publish_rules(rules)
    finally:
        client.close()


def run(settings: Settings, hostname: str | None = None) -> int:
    """Run the worker until it is shut down; returns the process exit code."""
    try:
        rules = load_rules(settings.rules_path)
    except RuleError as exc:
        log.error("invalid rules, worker not started: %s", exc)
        return EXIT_CONFIG
    risks = backtracking_risks(rules)
    if risks:
        for risk in risks:
            log.error("unsafe rule, worker not started: %s", risk)
        return EXIT_CONFIG
    log.info("loaded %d rules", len(rules))
    try:
        _publish(settings, rules)
    except redis.RedisError as exc:
        log.error("cannot write rule metadata to %s: %s", settings.redis_url, exc)
        return EXIT_FAILURE
    tune_malloc()  # before the pool forks: its children inherit the thresholds
    app = create_app(settings, rules)
    # app.start() is what app.worker_main() calls, but it also returns Celery's exit code.
    code = app.start(argv=worker_argv(settings, hostname))
    return int(code or EXIT_OK)

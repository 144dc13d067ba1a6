"""The workers' Celery app: the shared configuration plus the scan and analysis tasks.

Settings and (already validated) rules are handed to :func:`create_app` by the CLI and reach
the prefork children by inheritance; each child compiles its engine and opens its Redis
client once, in ``worker_process_init``.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from celery.signals import worker_process_init

from logsig.celeryconf import make_celery
from logsig.settings import Settings
from workers.analysis.tasks import register as register_analysis
from workers.rules import Rule
from workers.tasks import WorkerContext, register


def create_app(settings: Settings, rules: Sequence[Rule] | None = None) -> Celery:
    """A Celery app with the scan task registered, ready for ``worker_main``."""
    app = make_celery(settings, main="logsig.workers")
    context = WorkerContext(settings, rules)
    register(app, context)
    register_analysis(app, settings, lambda: context.state().engine)
    worker_process_init.connect(context.on_process_init, weak=False)
    return app

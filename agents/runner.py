"""Entry point of ``logsig agent``: build the sources, run the event loop, map signals.

The event loop is created here and only here. SIGTERM/SIGINT ask the agent to stop
(stop reading, flush, wait up to ``shutdown_timeout`` for acks, commit the registry); a
second signal stops waiting. Chunks still unacked then stay in the registry as intents
and are resent, under the same ids, by the next run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine, Sequence
from typing import Any

from agents.agent import Agent
from agents.block import Source
from agents.generator import GeneratorSource
from agents.registry import Registry
from agents.stdin import StdinSource
from agents.tail import TailSource
from logsig.errors import SettingsError
from logsig.gc_tuning import tune_gc
from logsig.malloc_tuning import tune_malloc
from logsig.settings import Settings

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_sources(settings: Settings, paths: Sequence[str], registry: Registry, *,
                  use_stdin: bool = False, rate: float | None = None, count: int | None = None,
                  seed: int | None = None) -> list[Source]:
    """The sources the command line asks for; :class:`SettingsError` if none or contradictory."""
    if not paths and not use_stdin and rate is None:
        raise SettingsError("the agent has nothing to read: give file paths or glob patterns, "
                            "--stdin, or --generate RATE")
    if count is not None and rate is None:
        raise SettingsError("--count only applies together with --generate RATE")
    if count is not None and count < 0:
        raise SettingsError(f"--count must be >= 0, got {count}")
    sources: list[Source] = []
    if paths:
        sources.append(TailSource(paths, poll_interval=settings.poll_interval,
                                  partial_line_timeout=settings.partial_line_timeout,
                                  rotate_wait=settings.rotate_wait,
                                  resume=registry.resume_offset, known=registry.known(),
                                  retired=registry.retire))
    if use_stdin:
        sources.append(StdinSource())
    if rate is not None:
        sources.append(GeneratorSource(rate, count, seed))
    return sources


def run(settings: Settings, paths: Sequence[str], *, use_stdin: bool = False,
        rate: float | None = None, count: int | None = None, seed: int | None = None) -> int:
    """Run the agent until its finite sources are shipped or it is signalled; the exit code.

    The registry is read (and later written) only when files are followed.
    """
    registry = Registry.load(settings.registry_path) if paths else Registry(settings.registry_path)
    sources = build_sources(settings, paths, registry, use_stdin=use_stdin, rate=rate,
                            count=count, seed=seed)
    return _run_loop(_main(settings, sources, registry))


async def _main(settings: Settings, sources: list[Source], registry: Registry) -> int:
    agent = Agent(settings, sources, registry)
    tune_gc()
    tune_malloc()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, _on_signal, agent, sig)
    try:
        log.info("agent %s shipping to %s:%d", settings.agent_name, settings.gateway_host,
                 settings.gateway_port)
        return await agent.run()
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


def _on_signal(agent: Agent, sig: signal.Signals) -> None:
    log.info("%s received: shutting down", sig.name)
    agent.stop()


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

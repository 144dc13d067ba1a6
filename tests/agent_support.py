"""Helpers shared by the agent tests."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

from agents.block import Block, Source


def run_source(src: Source, stop_after: float | None = None, timeout: float = 10) -> list[Block]:
    """Run one source to its end (or stop it after ``stop_after`` s); return what it emitted."""
    blocks: list[Block] = []

    async def sink(block: Block) -> None:
        blocks.append(block)

    async def main() -> None:
        task = asyncio.create_task(src.run(sink))
        if stop_after is not None:
            await asyncio.sleep(stop_after)
            src.stop()
        await asyncio.wait_for(task, timeout)

    asyncio.run(main())
    return blocks


@contextmanager
def out_of_descriptors() -> Iterator[None]:
    """A real EMFILE for every new descriptor: the soft limit at the lowest free one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

"""Lines from standard input until EOF (or until stopped).

A pipe or terminal is read through the event loop, so a stop interrupts a read that may
never return; a redirected regular file is read directly (such reads do not block).

What is read cannot be read again: unacked chunks are resent (same id) only while the
agent process lives, so exactly-once ends where a ``kill -9`` of the agent begins.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Awaitable, Callable

from agents.block import READ_SIZE, Block, LineBuffer, Sink

SOURCE_NAME = "stdin"


class StdinSource:
    """Reads ``fd`` (standard input by default) to EOF; a last unterminated line is kept."""

    finite = True

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self, sink: Sink) -> None:
        buffer = LineBuffer()
        read, close = await self._reader()
        try:
            while not self._stopped.is_set():
                data = await self._unless_stopped(read())
                if not data:
                    break
                lines, _ = buffer.feed(data)
                if lines:
                    await sink(Block(SOURCE_NAME, time.time(), lines))
            lines, _ = buffer.take()
            if lines:
                await sink(Block(SOURCE_NAME, time.time(), lines))
        finally:
            close()

    async def _reader(self) -> tuple[Callable[[], Awaitable[bytes]], Callable[[], None]]:
        """A read function and its clean-up, chosen by what kind of file stdin is."""
        fd = self._fd
        if stat.S_ISREG(os.fstat(fd).st_mode):

            async def read_file() -> bytes:
                return os.read(fd, READ_SIZE)

            return read_file, lambda: None
        reader = asyncio.StreamReader(limit=READ_SIZE)
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)

        def close() -> None:
            transport.close()
            os.set_blocking(fd, True)  # the loop made it non-blocking; give it back as found

        return lambda: reader.read(READ_SIZE), close

    async def _unless_stopped(self, read: Awaitable[bytes]) -> bytes:
        """The read's data, or ``b""`` if :meth:`stop` came first."""
        reading = asyncio.ensure_future(read)
        stopping = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait({reading, stopping},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            reading.cancel()  # no effect if it finished
        return reading.result() if reading in done else b""

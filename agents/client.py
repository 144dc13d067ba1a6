"""One pipelined Forward connection to the gateway: acks, resends and a bounded window.

Up to ``agent_max_inflight`` chunks are unacked at once; :meth:`ForwardClient.send`
waits for room, which is what finally makes the sources stop reading when the gateway
falls behind. A chunk not acked within ``ack_timeout``, or a lost connection, closes the
connection; after a backoff the client reconnects and resends every unacked chunk, in
order and under its original id, so the gateway can drop the duplicates. It retries for
as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from logsig import handshake
from logsig.errors import HandshakeError, LogsigError
from logsig.handshake_io import next_handshake_message
from logsig.settings import Settings
from logsig.tls import client_context, server_name

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_REPLY_BYTES = 1 << 20
JITTER = 0.25
"""Backoff delays are shortened by up to this fraction, so agents do not retry in step."""


class AckTimeout(LogsigError):
    """The gateway kept a chunk longer than ``ack_timeout`` without acking it."""


@dataclass(slots=True, eq=False)
class Chunk:
    """A batch on its way: the encoded frame is kept whole so a resend is byte-identical."""

    id: str
    frame: bytes
    lines: int
    sent_at: float = 0.0


def new_chunk_id() -> str:
    """A unique chunk id (the gateway deduplicates resends by it)."""
    return uuid.uuid4().hex


def backoff(attempt: int, initial: float, maximum: float,
            rng: random.Random | None = None) -> float:
    """Delay before retry ``attempt`` (0-based): ``initial`` doubling up to ``maximum``,
    shortened by up to :data:`JITTER` of itself."""
    delay = min(maximum, initial * 2 ** min(attempt, 32))
    return delay * (1 - JITTER * (rng or random).random())


class ForwardClient:
    """Delivers chunks to ``settings.gateway_host:gateway_port`` and reports each ack."""

    def __init__(self, settings: Settings, on_ack: Callable[[Chunk], None]) -> None:
        self._settings = settings
        self._on_ack = on_ack
        self._pending: dict[str, Chunk] = {}  # insertion order == send order
        self._window = asyncio.Semaphore(settings.agent_max_inflight)
        self._reserved = 0  # window slots taken by chunks not handed over yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.StreamWriter | None = None
        self._timer: asyncio.Timeout | None = None
        self._task: asyncio.Task[None] | None = None
        self._tls = client_context(settings)

    @property
    def unacked_lines(self) -> int:
        return sum(c.lines for c in self._pending.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="forward-client")

    async def close(self) -> None:
        """Stop (re)connecting and drop the connection; unacked chunks are abandoned."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def send(self, chunk: Chunk) -> None:
        """Hand over ``chunk``; waits while ``agent_max_inflight`` chunks are unacked."""
        await self.reserve()
        self.put(chunk)

    async def reserve(self) -> None:
        """Take a window slot for a chunk to :meth:`put` later (after its intent is written)."""
        await self._window.acquire()
        self._reserved += 1
        self._idle.clear()

    def put(self, chunk: Chunk) -> None:
        """Hand over ``chunk`` into a slot taken by :meth:`reserve`; it is sent at once."""
        self._reserved -= 1
        self._pending[chunk.id] = chunk
        if self._writer is not None:
            self._write(self._writer, chunk)

    async def wait_acked(self) -> None:
        """Return once every chunk handed over or reserved so far has been acked."""
        await self._idle.wait()

    async def _run(self) -> None:
        s = self._settings
        attempt = 0
        while True:
            try:
                reader, writer = await self._connect()
            except (OSError, HandshakeError, TimeoutError) as exc:
                log.warning("cannot connect to gateway %s:%d: %s", s.gateway_host, s.gateway_port,
                            exc)
            else:
                log.info("connected to gateway %s:%d (%d chunk(s) unacked)", s.gateway_host,
                         s.gateway_port, len(self._pending))
                if await self._session(reader, writer):
                    attempt = 0
            delay = backoff(attempt, s.retry_initial, s.retry_max)
            attempt += 1
            log.info("reconnecting in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the connection (over TLS if configured) and run the handshake if keyed."""
        s = self._settings
        tls = {"ssl": self._tls, "server_hostname": server_name(s),
               "ssl_handshake_timeout": s.ack_timeout} if self._tls else {}
        async with asyncio.timeout(s.ack_timeout):
            reader, writer = await asyncio.open_connection(s.gateway_host, s.gateway_port, **tls)
        if not s.shared_key:
            return reader, writer
        try:
            async with asyncio.timeout(s.ack_timeout):
                await self._handshake(reader, writer)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """HELO in, PING out, PONG in: both sides prove they know the shared key."""
        s = self._settings
        unpacker = handshake.new_unpacker()
        helo = handshake.Helo.decode(await next_handshake_message(reader, unpacker, "the gateway"))
        ping = handshake.Ping.create(helo, s.agent_name, s.shared_key, s.agent_username,
                                     s.agent_password)
        writer.write(ping.encode())
        reply = await next_handshake_message(reader, unpacker, "the gateway")
        pong = handshake.check_pong(reply, helo, ping, s.shared_key)
        log.info("authenticated with gateway %.100r", pong.hostname)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Resend what is unacked, then read acks until the connection fails.

        Returns whether any ack arrived (a working connection resets the backoff).
        """
        acked = False
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_REPLY_BYTES)
        self._writer = writer
        try:
            for chunk in list(self._pending.values()):
                self._write(writer, chunk)
            while data := await self._read(reader):
                unpacker.feed(data)
                for reply in unpacker:
                    acked = self._handle(reply) or acked
            log.warning("gateway closed the connection (%d chunk(s) unacked)", len(self._pending))
        except (OSError, AckTimeout, ValueError, msgpack.UnpackException) as exc:
            log.warning("gateway connection failed: %s (%d chunk(s) unacked)", exc,
                        len(self._pending))
        finally:
            self._writer = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return acked

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        """Next bytes from the gateway; raises :class:`AckTimeout` if the oldest chunk is late."""
        oldest = next(iter(self._pending.values()), None)
        deadline = None if oldest is None else oldest.sent_at + self._settings.ack_timeout
        try:
            async with asyncio.timeout_at(deadline) as self._timer:
                return await reader.read(READ_SIZE)
        except TimeoutError:
            late = next(iter(self._pending), "?")
            raise AckTimeout(f"chunk {late} not acked within {self._settings.ack_timeout}s"
                             ) from None
        finally:
            self._timer = None

    def _write(self, writer: asyncio.StreamWriter, chunk: Chunk) -> None:
        if writer.is_closing():
            return  # stays pending; resent on the next connection
        chunk.sent_at = asyncio.get_running_loop().time()
        writer.write(chunk.frame)
        timer = self._timer
        if timer is not None and timer.when() is None:  # idle until now: start the ack clock
            timer.reschedule(chunk.sent_at + self._settings.ack_timeout)

    def _handle(self, reply: object) -> bool:
        chunk_id = reply.get("ack") if isinstance(reply, dict) else None
        chunk = self._pending.pop(chunk_id, None) if isinstance(chunk_id, str) else None
        if chunk is None:
            log.debug("ignoring reply %.200r", reply)
            return False
        self._window.release()
        if not self._pending and not self._reserved:
            self._idle.set()
        self._on_ack(chunk)
        return True

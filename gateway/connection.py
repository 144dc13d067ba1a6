"""One client connection: decode Forward frames, hand chunks on, write acks back.

A frame that is malformed, of the wrong shape or too large closes this connection only,
with the reason logged; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from gateway.coalescer import Coalescer
from gateway.records import message_to_chunk
from logsig.errors import ProtocolError
from logsig.forward import READ_SIZE, ForwardMessage, FrameDecoder, encode_ack

log = logging.getLogger(__name__)

# A client that does not read its acks cannot make us buffer them without bound.
MAX_UNREAD_ACK_BYTES = 1024 * 1024


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        coalescer: Coalescer,
        max_frame_bytes: int,
        read_timeout: float,
        max_records: int = 0,
        max_line_bytes: int = 0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._coalescer = coalescer
        self._decoder = FrameDecoder(max_frame_bytes)
        self._read_timeout = read_timeout
        self._max_records = max_records  # 0: no limit
        self._max_line_bytes = max_line_bytes  # 0: no limit
        self.truncated_lines = 0
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self._peer_host = str(peer[0])
        self._awaiting_acks = 0
        self._acks_done = asyncio.Event()
        self._acks_done.set()

    async def serve(self, initial: bytes = b"") -> None:
        """Read until EOF or a protocol error; then wait for owed acks and close.

        ``initial``: bytes already read (those that followed the handshake's PING).
        """
        try:
            if initial:
                await self._handle(initial)
            while data := await self._read():
                await self._handle(data)
            if self._decoder.pending_bytes:
                log.warning("connection %s closed in the middle of a frame (%d bytes dropped)",
                            self.peer, self._decoder.pending_bytes)
        except ProtocolError as exc:
            log.warning("closing connection %s: %s", self.peer, exc.reason)
            self.close()
            return
        except TimeoutError:
            log.warning("closing connection %s: stalled for %ss in the middle of a frame "
                        "(%d bytes held)", self.peer, self._read_timeout,
                        self._decoder.pending_bytes)
            self.close()
            return
        except ConnectionError as exc:
            log.info("connection %s lost: %s", self.peer, exc)
            self.close()
            return
        except Exception:  # a bug of ours: this connection goes, the gateway stays
            log.exception("closing connection %s: unexpected error serving it", self.peer)
            self.close()
            return
        try:  # the client half-closed: send what it is owed, within bounds
            await asyncio.wait_for(self._acks_done.wait(), self._read_timeout)
        except TimeoutError:
            log.warning("closing connection %s: %d chunk(s) not acknowledged within %ss",
                        self.peer, self._awaiting_acks, self._read_timeout)
        self.close()

    async def _read(self) -> bytes:
        """Between frames a client may idle for ever; inside one it must keep sending.

        Nothing is read while the gateway is full (TCP backpressure on every client).
        """
        await self._coalescer.wait_for_room()
        if not self._decoder.pending_bytes:
            return await self._reader.read(READ_SIZE)
        async with asyncio.timeout(self._read_timeout):
            return await self._reader.read(READ_SIZE)

    async def _handle(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:  # served up to the bad request, then the connection closes
            await self._serve(cast(list[ForwardMessage], exc.decoded))
            raise  # (no name keeps the error: it would hold this frame in a reference cycle)
        await self._serve(messages)

    async def _serve(self, messages: list[ForwardMessage]) -> None:
        for message in messages:
            if self._max_records and message.line_count > self._max_records:
                raise ProtocolError(f"{message.line_count} lines in one request exceed "
                                    f"MAX_RECORDS_PER_CHUNK={self._max_records}")
            chunk = message_to_chunk(message, self._peer_host, self._max_line_bytes)
            truncated = chunk.truncated  # counted in totals.truncated by the workers
            if truncated:
                self.truncated_lines += truncated
                log.warning("connection %s: %d line(s) longer than MAX_LINE_BYTES=%d truncated "
                            "(%d on this connection)", self.peer, truncated,
                            self._max_line_bytes, self.truncated_lines)
            if not chunk.segments:  # an empty event stream: nothing to publish
                if message.chunk:
                    self.ack(message.chunk, owed=False)
                continue
            if message.chunk:
                self._awaiting_acks += 1
                self._acks_done.clear()
            await self._coalescer.add(message.tag, chunk, self if message.chunk else None)

    def ack(self, chunk_id: str, owed: bool = True) -> None:
        if owed:
            self._awaiting_acks -= 1
            if self._awaiting_acks == 0:
                self._acks_done.set()
        if self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > MAX_UNREAD_ACK_BYTES:
            log.warning("closing connection %s: it does not read its acks", self.peer)
            self.close()
            return
        self._writer.write(encode_ack(chunk_id))

    def publish_failed(self, reason: str) -> None:
        # Closing makes the client re-send its unacked chunks promptly, on a new connection.
        self._awaiting_acks -= 1
        if self._awaiting_acks == 0:
            self._acks_done.set()
        if not self._writer.is_closing():
            log.warning("closing connection %s: its chunk could not be published (%s)",
                        self.peer, reason)
            self.close()

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

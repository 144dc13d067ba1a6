"""Reading one handshake message off a stream, shared by the gateway and the agent."""

from __future__ import annotations

import asyncio

import msgpack

from logsig.errors import HandshakeAbandoned, HandshakeError


async def next_handshake_message(
    reader: asyncio.StreamReader, unpacker: msgpack.Unpacker, peer: str
) -> object:
    """The next msgpack value from ``peer`` (its size bounded by ``unpacker``).

    :class:`HandshakeAbandoned` if ``peer`` closes before it ever sent a byte.
    """
    fed = unpacker.tell() > 0
    while True:
        try:
            return next(unpacker)
        except StopIteration:
            pass
        except Exception as exc:  # msgpack raises many types for corrupt input
            raise HandshakeError(f"malformed handshake message ({type(exc).__name__})") from exc
        data = await reader.read(4096)
        if not data:
            if not fed:
                raise HandshakeAbandoned(f"{peer} closed the connection without a word")
            raise HandshakeError(f"{peer} closed the connection during the handshake")
        fed = True
        try:
            unpacker.feed(data)
        except msgpack.BufferFull:
            raise HandshakeError("handshake message too large") from None

"""The gateway's side of the Forward v1 handshake on one connection (see logsig/handshake.py).

Enabled whenever ``SHARED_KEY`` is set: the gateway greets every connection with a HELO and
reads nothing but a PING until the client has proved it knows the key (and, with
``AUTH_USERS_FILE``, a username and password). A client that sends data first, sends a wrong
digest, replays a PING from another connection, or stalls is refused with the reason logged;
none of its bytes reach the decoder, let alone Redis.
"""

from __future__ import annotations

import asyncio
import logging

from logsig.errors import HandshakeAbandoned, HandshakeError, SettingsError
from logsig.handshake import ServerHandshake, new_unpacker
from logsig.handshake_io import next_handshake_message
from logsig.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Authenticator", "load_users"]


def load_users(path: str) -> dict[str, str]:
    """``username:password`` per line; blank lines and ``#`` comments ignored."""
    users: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise SettingsError(f"AUTH_USERS_FILE: cannot read {path!r}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SettingsError(f"AUTH_USERS_FILE {path!r} line {number}: expected "
                                "username:password")
        users[user] = password
    return users


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.shared_key
        self._hostname = settings.server_hostname
        self._users = load_users(settings.auth_users_file) if settings.auth_users_file else {}
        self._timeout = settings.read_timeout
        self.refused = 0

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        peer: str) -> bytes | None:
        """Run the handshake; the bytes that followed the PING, or None if refused."""
        server = ServerHandshake(self._key, self._hostname, self._users)
        writer.write(server.helo.encode())
        unpacker = new_unpacker()
        client = "?"
        try:
            async with asyncio.timeout(self._timeout):
                obj = await next_handshake_message(reader, unpacker, "the client")
            pong, client = server.answer(obj)
            writer.write(pong.encode())
            if not pong.ok:
                raise HandshakeError(pong.reason)
        except HandshakeAbandoned:
            log.debug("connection %s closed before its PING (a probe or heartbeat)", peer)
            return None
        except HandshakeError as exc:
            return self._refuse(peer, client, exc.reason)
        except TimeoutError:
            return self._refuse(peer, client, f"no PING within {self._timeout}s")
        except ConnectionError as exc:
            return self._refuse(peer, client, f"connection lost during the handshake ({exc})")
        log.info("connection %s authenticated (client hostname %.100r%s)", peer, client,
                 " with username" if self._users else "")
        return bytes(unpacker.read_bytes(1 << 30))

    def _refuse(self, peer: str, client: str, reason: str) -> None:
        self.refused += 1
        log.warning("refused connection %s (client hostname %.100r): %s", peer, client, reason)
        return None

"""Forward protocol v1 handshake (HELO, PING, PONG), sans-I/O.

As the published "Forward Protocol Specification v1" (fluent/fluentd wiki) defines it, and as
fluentd's in_forward/out_forward compute it::

    server -> HELO  ["HELO", {"nonce": bin, "auth": bin (user-auth salt, or empty),
                              "keepalive": bool}]
    client -> PING  ["PING", client_hostname, shared_key_salt,
                     hex sha512(shared_key_salt + client_hostname + nonce + shared_key),
                     username, hex sha512(auth_salt + username + password) or ""]
    server -> PONG  ["PONG", auth_result, reason, server_hostname,
                     hex sha512(shared_key_salt + server_hostname + nonce + shared_key)]

The client proves it knows the shared key (and the password); the PONG digest proves the
server does too (mutual authentication). The nonce is fresh and random per connection, so a
PING captured on one connection is useless on another (replay). Digests are compared in
constant time. Nothing here does I/O: the gateway (gateway/auth.py) and the agent
(agents/client.py) move the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

import msgpack

from logsig.errors import HandshakeError

__all__ = ["MAX_MESSAGE_BYTES", "Helo", "Ping", "Pong", "ServerHandshake", "check_pong", "digest"]

NONCE_BYTES = 16
MAX_MESSAGE_BYTES = 64 * 1024
"""No handshake message is anywhere near this; a larger one is refused before it is read."""


def _b(value: str | bytes) -> bytes:
    # Decoded with surrogateescape: bytes that are not UTF-8 hash as the peer sent them.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def digest(*parts: str | bytes) -> str:
    """Hex SHA-512 of the concatenated parts (str as UTF-8), as the specification writes it."""
    h = hashlib.sha512()
    for part in parts:
        h.update(_b(part))
    return h.hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _array(obj: object, name: str, size: int) -> list[object]:
    if not isinstance(obj, list | tuple) or len(obj) != size or obj[0] != name:
        kind = obj[0] if isinstance(obj, list | tuple) and obj else type(obj).__name__
        raise HandshakeError(f"expected {name}, got {str(kind)[:40]!r}")
    return list(obj)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise HandshakeError(f"{what} must be a string")
    return value


def _salt(value: object, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if not isinstance(value, bytes):
        raise HandshakeError(f"{what} must be bin or str")
    return value


@dataclass(frozen=True, slots=True)
class Helo:
    nonce: bytes
    auth: bytes = b""  # salt for the username/password digest; empty: no user auth
    keepalive: bool = True

    def encode(self) -> bytes:
        return _pack(["HELO", {"nonce": self.nonce, "auth": self.auth,
                               "keepalive": self.keepalive}])

    @classmethod
    def decode(cls, obj: object) -> Helo:
        options = _array(obj, "HELO", 2)[1]
        if not isinstance(options, dict):
            raise HandshakeError("HELO options must be a map")
        nonce = _salt(options.get("nonce"), "HELO nonce")
        if not nonce:
            raise HandshakeError("HELO nonce is empty")
        auth = _salt(options.get("auth", b""), "HELO auth")
        return cls(nonce, auth, bool(options.get("keepalive", True)))


@dataclass(frozen=True, slots=True)
class Ping:
    hostname: str
    salt: bytes
    digest: str
    username: str = ""
    password_digest: str = ""

    @classmethod
    def create(cls, helo: Helo, hostname: str, shared_key: str, username: str = "",
               password: str = "", salt: bytes | None = None) -> Ping:
        salt = os.urandom(NONCE_BYTES) if salt is None else salt
        key_digest = digest(salt, hostname, helo.nonce, shared_key)
        password_digest = digest(helo.auth, username, password) if helo.auth else ""
        return cls(hostname, salt, key_digest, username if helo.auth else "", password_digest)

    def encode(self) -> bytes:
        return _pack(["PING", self.hostname, self.salt, self.digest, self.username,
                      self.password_digest])

    @classmethod
    def decode(cls, obj: object) -> Ping:
        _, host, salt, key_digest, user, password_digest = _array(obj, "PING", 6)
        return cls(_text(host, "PING hostname"), _salt(salt, "PING shared_key_salt"),
                   _text(key_digest, "PING digest"), _text(user, "PING username"),
                   _text(password_digest, "PING password digest"))


@dataclass(frozen=True, slots=True)
class Pong:
    ok: bool
    reason: str
    hostname: str
    digest: str

    def encode(self) -> bytes:
        return _pack(["PONG", self.ok, self.reason, self.hostname, self.digest])

    @classmethod
    def decode(cls, obj: object) -> Pong:
        _, ok, reason, host, key_digest = _array(obj, "PONG", 5)
        if not isinstance(ok, bool):
            raise HandshakeError("PONG auth_result must be a boolean")
        return cls(ok, _text(reason, "PONG reason"), _text(host, "PONG hostname"),
                   _text(key_digest, "PONG digest"))


class ServerHandshake:
    """The server's side for one connection: a fresh nonce (and auth salt), then one PING."""

    def __init__(self, shared_key: str, hostname: str,
                 users: Mapping[str, str] | None = None) -> None:
        if not shared_key:
            raise ValueError("the handshake needs a shared key")
        self._key = shared_key
        self._hostname = hostname
        self._users = dict(users or {})
        auth = os.urandom(NONCE_BYTES) if self._users else b""
        self.helo = Helo(os.urandom(NONCE_BYTES), auth, keepalive=True)

    def answer(self, obj: object) -> tuple[Pong, str]:
        """Check a decoded PING; return the PONG to send and the client's hostname.

        Raises :class:`HandshakeError` if ``obj`` is not a PING at all. A PING with a wrong
        digest gets a refusing PONG (``ok`` false, with the reason), as fluentd sends.
        """
        ping = Ping.decode(obj)
        reason = self._refusal(ping)
        if reason:
            return Pong(False, reason, self._hostname, ""), ping.hostname
        pong_digest = digest(ping.salt, self._hostname, self.helo.nonce, self._key)
        return Pong(True, "", self._hostname, pong_digest), ping.hostname

    def _refusal(self, ping: Ping) -> str:
        expected = digest(ping.salt, ping.hostname, self.helo.nonce, self._key)
        if not _same(ping.digest, expected):
            return "shared_key mismatch"
        if not self._users:
            return ""
        password = self._users.get(ping.username)
        if not ping.username or password is None:
            return "username/password mismatch"
        if not _same(ping.password_digest, digest(self.helo.auth, ping.username, password)):
            return "username/password mismatch"
        return ""


def check_pong(obj: object, helo: Helo, ping: Ping, shared_key: str) -> Pong:
    """The client's last step: the server accepted us and proved it knows the key."""
    pong = Pong.decode(obj)
    if not pong.ok:
        raise HandshakeError(f"gateway refused authentication: {pong.reason[:200]}")
    if not _same(pong.digest, digest(ping.salt, pong.hostname, helo.nonce, shared_key)):
        raise HandshakeError("gateway's PONG digest is wrong: it does not know the shared key")
    return pong


def new_unpacker() -> msgpack.Unpacker:
    """A bounded unpacker for handshake messages."""
    return msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE_BYTES,
                            unicode_errors="surrogateescape", strict_map_key=False)

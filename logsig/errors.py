"""One exception hierarchy for the whole project, so callers can catch ``LogsigError``."""

from __future__ import annotations


class LogsigError(Exception):
    """Root of every error logsig raises on purpose."""


class SettingsError(LogsigError):
    """A setting from the environment or ``.env`` has a value we cannot use."""


class ProtocolError(LogsigError):
    """A peer sent bytes that are not a valid Forward protocol v1 message.

    ``data`` keeps (a prefix of) the offending value for the log line; ``decoded`` holds the
    valid requests that came before it in the same read, which the caller still serves.
    """

    def __init__(self, reason: str, data: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data
        self.decoded: list[object] = []


class FrameTooLarge(ProtocolError):
    """A single frame exceeds ``MAX_FRAME_BYTES``."""


class RuleError(LogsigError):
    """A rule file is invalid; the message names the file, the rule and the problem."""


class HandshakeError(ProtocolError):
    """The Forward v1 handshake (HELO/PING/PONG) failed: wrong key, bad message, no PING.

    ``reason`` is safe to log: it never contains a key, a password or a digest.
    """


class HandshakeAbandoned(HandshakeError):
    """The peer closed the connection before sending a byte: a health probe or fluentd's
    default ``transport`` heartbeat (connect, then close), not a failed login."""

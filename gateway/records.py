"""Turn Forward events into batch chunks: which field is the line, the host, the source.

Our agents send ``{"message", "source", "host"}``; Fluent Bit's tail input sends ``log``,
fluent-logger clients send whatever dict the application logs. A record with no text field
is kept as compact JSON so no event is silently dropped.
"""

from __future__ import annotations

import json
import uuid

from logsig.batch import Chunk, Segment
from logsig.forward import ForwardMessage, Record

LINE_FIELDS = ("message", "log", "msg", "line")
HOST_FIELDS = ("host", "hostname")
SOURCE_FIELDS = ("source", "path", "file")


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


def _clean(text: str) -> str:
    # Strings from the outer decoder keep invalid UTF-8 as surrogates; make them valid text.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def record_line(record: Record) -> str:
    for name in LINE_FIELDS:
        text = _text(record.get(name))
        if text is not None:
            return _clean(text.rstrip("\r\n"))
    return _clean(json.dumps(record, default=repr, ensure_ascii=False, separators=(",", ":")))


def _field(record: Record, names: tuple[str, ...], default: str) -> str:
    for name in names:
        text = _text(record.get(name))
        if text:
            return _clean(text)
    return default


def message_to_chunk(message: ForwardMessage, peer_host: str) -> Chunk:
    """One chunk per request; without a client chunk id the gateway assigns one.

    Runs once per line received, so the common record shape (text ``message``, ``host`` and
    ``source``, as our agents send) takes a short path; anything else goes the general way.
    """
    chunk = Chunk(message.chunk or f"gw-{uuid.uuid4().hex}")
    segments = chunk.segments
    lines: list[str] = []
    host = source = None
    for ts, record in message.events:
        h, s, line = record.get("host"), record.get("source"), record.get("message")
        if type(h) is not str or not h:
            h = _field(record, HOST_FIELDS, peer_host)
        if type(s) is not str or not s:
            s = _field(record, SOURCE_FIELDS, message.tag)
        if h != host or s != source:
            host, source, lines = h, s, []
            segments.append(Segment(_clean(h), _clean(s), ts, lines))
        if type(line) is str and line.isascii() and not line.endswith(("\n", "\r")):
            lines.append(line)
        else:
            lines.append(record_line(record))
    return chunk

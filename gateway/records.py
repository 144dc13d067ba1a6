"""Turn Forward events into batch chunks: which field is the line, the host, the source.

Our agents send each block of lines as one ``{"message": text}`` event whose line count is
in the frame's ``lines`` option, with their host and sources in two more options (earlier
agents sent a lean ``{"message"}`` record per line, and before that ``{"message", "source",
"host"}``); such a text becomes a segment as it is. Fluent Bit's tail input sends
``log``, fluent-logger clients send whatever dict the application logs. A record with no text field
is kept as compact JSON so no event is silently dropped. Lines longer than
``MAX_LINE_BYTES`` are cut here (:mod:`gateway.limits`) and counted in ``chunk.truncated``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from operator import itemgetter

from gateway.limits import truncate, truncate_lines
from logsig.batch import Chunk, ChunkBuilder, Segment
from logsig.errors import ProtocolError
from logsig.forward import ForwardMessage, Record, event_seconds, ext_value

LINE_FIELDS = ("message", "log", "msg", "line")
HOST_FIELDS = ("host", "hostname")
SOURCE_FIELDS = ("source", "path", "file")

_RECORD = itemgetter(1)
_MESSAGE, _HOST, _SOURCE = itemgetter("message"), itemgetter("host"), itemgetter("source")


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
    try:
        text = json.dumps(record, default=_json_value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:  # a map key JSON cannot hold (bytes, an array): written as text
        text = json.dumps(_str_keys(record), default=_json_value, ensure_ascii=False,
                          separators=(",", ":"))
    return _clean(text)


def _str_keys(value: object) -> object:
    """``value`` with every map key JSON refuses turned into text, at any depth."""
    if isinstance(value, dict):
        return {k if isinstance(k, str | int | float | bool) or k is None else _key_text(k):
                _str_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_str_keys(v) for v in value]
    return value


def _key_text(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return repr(key)


def _json_value(value: object) -> object:
    """What JSON cannot hold: EventTimes (kept raw by the decoder) as Unix times, else repr."""
    if type(value) is slice:
        with contextlib.suppress(ProtocolError):
            return ext_value(value)
    return repr(value)


def _field(record: Record, names: tuple[str, ...], default: str) -> str:
    for name in names:
        text = _text(record.get(name))
        if text:
            return _clean(text)
    return default


def message_to_chunk(message: ForwardMessage, peer_host: str, max_line_bytes: int = 0) -> Chunk:
    """One chunk per request; without a client chunk id the gateway assigns one.

    Runs for every line received, so the shapes our agents send are handled whole: block
    events (the ``lines`` option) become segments as they are; the records of earlier agents
    (lean ``{"message"}`` records with ``host`` and ``sources`` options, or one ``host`` and
    ``source`` in every record) go through whole-list C calls; anything else line by line.
    """
    chunk_id = message.chunk or f"gw-{uuid.uuid4().hex}"
    if message.lines is not None:
        return _blocks_chunk(chunk_id, message, peer_host, max_line_bytes)
    fast = _fast_lines(message)
    if fast is None:
        return _general_chunk(chunk_id, message, peer_host, max_line_bytes)
    host, runs, lines = fast
    truncated = truncate_lines(lines, max_line_bytes)
    segments, start = [], 0
    for source, end in _merged_runs(runs):
        ts = event_seconds(message.entries[start][0])
        segments.append(Segment.of(host or peer_host, source, ts, lines[start:end]))
        start = end
    return Chunk(chunk_id, segments, truncated)


def _blocks_chunk(chunk_id: str, message: ForwardMessage, peer_host: str,
                  max_line_bytes: int) -> Chunk:
    """Block events (the ``lines`` option, checked by the decoder) as segments: each text is
    already a segment's text, and neighbouring blocks of one source make one segment."""
    runs = message.sources or ((message.tag, len(message.entries)),)
    sources = [source for source, count in runs for _ in range(count)]
    host = message.host or peer_host
    builder = ChunkBuilder(chunk_id)
    cut = 0
    for (ts, record), count, source in zip(message.entries, message.lines or (), sources,
                                           strict=True):
        text = _clean(record["message"])
        if count == 1 and text.endswith(("\n", "\r")):
            text = text.rstrip("\r\n")  # one record: trimmed as the general path trims it
        # One record is one line however many newlines it holds: only its length counts.
        if count == 1 or _may_hold_long_line(text, max_line_bytes):
            text, short = _truncated(text, count, max_line_bytes)
            cut += short
        builder.add(host, source, event_seconds(ts), text, count)
    chunk = builder.build()
    chunk.truncated = cut
    return chunk


def _may_hold_long_line(text: str, max_bytes: int) -> bool:
    """False when no line of ``text`` can exceed ``max_bytes`` UTF-8 bytes, in a few
    ``memchr`` calls: a line that might (over ``max_bytes // 4`` characters) covers a whole
    aligned window of ``max_bytes // 8`` characters, so a newline in every window rules it
    out."""
    if max_bytes <= 0 or len(text) * 4 <= max_bytes:
        return False
    step = max_bytes // 8
    if step < 256:  # windows too small to be worth it: check the lines themselves
        return True
    find = text.find
    return any(find("\n", i, i + step) < 0 for i in range(0, len(text) - step + 1, step))


def _truncated(text: str, count: int, max_line_bytes: int) -> tuple[str, int]:
    """``text`` (``count`` lines) with its lines cut to ``max_line_bytes``, and how many were."""
    if count == 1:
        short = truncate(text, max_line_bytes)
        return (text, 0) if short is None else (short, 1)
    lines = text.split("\n")
    cut = truncate_lines(lines, max_line_bytes)
    return ("\n".join(lines) if cut else text), cut


def _merged_runs(runs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """``(source, end index)`` per segment: neighbouring runs of one source make one, as
    :class:`ChunkBuilder` would."""
    merged: list[tuple[str, int]] = []
    end = 0
    for source, count in runs:
        end += count
        if merged and merged[-1][0] == source:
            merged[-1] = (source, end)
        else:
            merged.append((source, end))
    return merged


def _plain(lines: list[str]) -> bool:
    """Whether every item is a str of ASCII text without line breaks (a TypeError if not
    all are str): such lines join into a segment as they are.

    Joined without a separator, so each test is one ``memchr``-speed pass (counting the
    newlines of the joined text instead costs about a cycle a byte).
    """
    flat = "".join(lines)
    return flat.isascii() and "\n" not in flat and "\r" not in flat


def _fast_lines(message: ForwardMessage
                ) -> tuple[str | None, Sequence[tuple[str, int]], list[str]] | None:
    """(host, source runs, lines) when the frame has one of our agents' shapes, else None.

    Lean records (exactly ``{"message"}``) take host and sources from the frame's options;
    records that each carry ``message``, ``host`` and ``source`` must all name one host and
    one source. Either way every line must be plain (:func:`_plain`).
    """
    events = message.entries
    if not events:
        return None
    try:
        records = list(map(_RECORD, events))
        lines = list(map(_MESSAGE, records))
        if message.sources is not None:
            if set(map(len, records)) != {1}:
                return None
            host, runs = message.host, message.sources
        else:
            hosts, sources = set(map(_HOST, records)), set(map(_SOURCE, records))
            if len(hosts) != 1 or len(sources) != 1:
                return None
            host, source = hosts.pop(), sources.pop()
            if (type(host) is not str or type(source) is not str or not host or not source
                    or not (host + source).isascii()):
                return None
            runs = ((source, len(lines)),)
        return (host, runs, lines) if _plain(lines) else None
    except (KeyError, TypeError):
        return None


def _general_chunk(chunk_id: str, message: ForwardMessage, peer_host: str,
                   max_line_bytes: int) -> Chunk:
    builder = ChunkBuilder(chunk_id)
    cut = 0
    default_host = message.host or peer_host
    runs = message.sources or ((message.tag, len(message.entries)),)
    default_sources = [source for source, count in runs for _ in range(count)]
    for (ts, record), default_source in zip(message.events, default_sources, strict=True):
        host, source = record.get("host"), record.get("source")
        if type(host) is not str or not host:
            host = _field(record, HOST_FIELDS, default_host)
        if type(source) is not str or not source:
            source = _field(record, SOURCE_FIELDS, default_source)
        line = record.get("message")
        if type(line) is not str or not line.isascii() or line.endswith(("\n", "\r")):
            line = record_line(record)
        short = truncate(line, max_line_bytes)
        if short is not None:
            line, cut = short, cut + 1
        builder.add(_clean(host), _clean(source), ts, line)
    chunk = builder.build()
    chunk.truncated = cut
    return chunk

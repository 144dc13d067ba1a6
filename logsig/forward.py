"""Fluentd Forward protocol v1 codec, shared by the agents (client) and the gateway (server).

Follows the published "Forward Protocol Specification v1" (fluent/fluentd wiki)::

    Message                 [tag, time, record, option?]
    Forward                 [tag, [[time, record], ...], option?]
    PackedForward           [tag, <bin|str: concatenated msgpack [time, record]>, option?]
    CompressedPackedForward as PackedForward, entries gzipped, option {"compressed": "gzip"}

``time`` is an integer (seconds) or an EventTime (msgpack ext type 0: uint32 seconds and
uint32 nanoseconds, big-endian); floats are accepted too, as fluentd's in_forward does.
``option`` may carry ``size`` (number of events), ``chunk`` (the client asks for an ack) and
``compressed``. The server answers a chunk with ``{"ack": chunk}``.

Our agents add three option keys of their own (fluentd's in_forward ignores keys it does not
know): ``host``; ``sources``, a list of ``[source, count]`` runs covering the events in
order; and ``lines``, one line count per event. With ``lines``, every record is
``{"message": text}`` and an event counted ``n > 1`` holds ``n`` lines joined by ``"\n"``
(counted ``1``, it is one record that may hold newlines, as without the option). So an agent
sends a block of lines read together as one ``[seconds, {"message": text}]`` event, and the
gateway takes its text as it is: decoding and re-joining an object per line cost the
gateway about 0.5 µs a line, most of its work (``benchmarks/gateway.py``).

The codec is sans-I/O: :class:`FrameDecoder` takes bytes and returns decoded messages, so it
is tested without sockets and reused by any transport.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

import msgpack

from logsig.errors import FrameTooLarge, ProtocolError
from logsig.newlines import count_newlines

EVENT_TIME_EXT = 0
READ_SIZE = 64 * 1024
_EVENT_TIME = struct.Struct(">II")
_ARRAY32 = struct.Struct(">BI")

Record = dict[str, Any]
Event = tuple[float, Record]  # the time may be an int (whole seconds) as sent
_TIME_TYPES = frozenset({float, int})
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_START, _STOP = attrgetter("start"), attrgetter("stop")


@dataclass(frozen=True, slots=True)
class ForwardMessage:
    """One decoded request: its tag, its entries, and the chunk id to ack (if any).

    ``entries`` are checked ``(time, record)`` pairs whose time is still as decoded (see
    :func:`event_seconds`); :attr:`events` gives them with Unix times.
    """

    tag: str
    entries: list[tuple[Any, Record]]
    chunk: str | None
    mode: str  # "message" | "forward" | "packed" | "compressed"
    host: str | None = None
    """The sender's host from the ``host`` option, if it gave one."""
    sources: tuple[tuple[str, int], ...] | None = None
    """``(source, count)`` runs over :attr:`entries` from the ``sources`` option, if given."""
    lines: tuple[int, ...] | None = None
    """Lines held by each entry's ``message``, from the ``lines`` option, if given."""

    @property
    def line_count(self) -> int:
        """How many lines the request carries (its events, unless ``lines`` says more)."""
        return len(self.entries) if self.lines is None else sum(self.lines)

    @property
    def events(self) -> list[Event]:
        return [(event_seconds(ts), record) for ts, record in self.entries]


# --------------------------------------------------------------------------- encoding


def event_time(ts: float) -> msgpack.ExtType:
    """Encode a Unix time as a Forward EventTime (nanosecond precision)."""
    seconds = int(ts)
    nanos = min(round((ts - seconds) * 1e9), 999_999_999)
    return msgpack.ExtType(EVENT_TIME_EXT, _EVENT_TIME.pack(seconds, nanos))


def pack_event(ts: float, record: Record) -> bytes:
    """One PackedForward entry: ``[EventTime, record]`` as msgpack bytes."""
    return msgpack.packb([event_time(ts), record], use_bin_type=True)


def _options(chunk: str | None, size: int | None = None, compressed: bool = False,
             extra: Record | None = None) -> Record:
    option: Record = dict(extra) if extra else {}
    if size is not None:
        option["size"] = size
    if chunk is not None:
        option["chunk"] = chunk
    if compressed:
        option["compressed"] = "gzip"
    return option


def encode_message(tag: str, ts: float, record: Record, chunk: str | None = None) -> bytes:
    body: list[Any] = [tag, event_time(ts), record]
    if chunk is not None:
        body.append(_options(chunk))
    return msgpack.packb(body, use_bin_type=True)


def encode_forward(tag: str, events: Iterable[Event], chunk: str | None = None) -> bytes:
    entries = [[event_time(ts), record] for ts, record in events]
    return msgpack.packb([tag, entries, _options(chunk, len(entries))], use_bin_type=True)


def encode_packed_forward(
    tag: str, entries: bytes | Sequence[bytes | memoryview], size: int,
    chunk: str | None = None, compress: bool = False, extra: Record | None = None,
) -> bytes:
    """Wrap already-packed entries (see :func:`pack_event`) into a (Compressed)PackedForward;
    ``extra`` adds option keys (``host``, ``sources``).

    ``entries`` may come in pieces: the frame is then written around them in one join, not
    joined first and copied again by the packer (frames are megabytes).
    """
    parts = [entries] if isinstance(entries, bytes | bytearray | memoryview) else entries
    if compress:
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
        parts = [gz.compress(b"".join(parts)) + gz.flush()]
    option = _options(chunk, size, compress, extra)
    return b"".join((b"\x93", msgpack.packb(tag, use_bin_type=True),
                     _bin_header(sum(map(len, parts))), *parts,
                     msgpack.packb(option, use_bin_type=True)))


def _bin_header(size: int) -> bytes:
    """The msgpack bin header of ``size`` bytes, the smallest that fits (as packb writes)."""
    return _sized_header(size, b"\xc4", b"\xc5", b"\xc6")


def str_header(size: int) -> bytes:
    """The msgpack str header of a ``size``-byte string, the smallest that fits (as packb
    writes it), for a string packed from bytes already UTF-8 without a decode."""
    if size < 32:
        return bytes((0xA0 | size,))  # fixstr
    return _sized_header(size, b"\xd9", b"\xda", b"\xdb")


def _sized_header(size: int, one: bytes, two: bytes, four: bytes) -> bytes:
    """A type byte for a 1-, 2- or 4-byte length, whichever fits, and the length."""
    if size < 1 << 8:
        return one + size.to_bytes(1, "big")
    if size < 1 << 16:
        return two + size.to_bytes(2, "big")
    return four + size.to_bytes(4, "big")


def encode_ack(chunk: str) -> bytes:
    return msgpack.packb({"ack": chunk}, use_bin_type=True)


# --------------------------------------------------------------------------- decoding


def event_seconds(ts: Any) -> float:
    """A checked entry's time as a Unix time: an int, a float, or an EventTime kept raw.

    Packed entries are decoded with ``ext_hook=slice``: a C constructor, so an EventTime
    costs no Python call per event; it arrives as ``slice(0, <8 bytes>)`` and only the
    times someone reads are converted.
    """
    return ext_value(ts) if type(ts) is slice else float(ts)  # type: ignore[no-any-return]


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        seconds, nanos = _EVENT_TIME.unpack(data)
        return float(seconds) + nanos / 1e9
    raise ProtocolError(f"unsupported msgpack ext type {code} ({len(data)} bytes)")


def _new_unpacker(max_bytes: int, unicode_errors: str) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        unicode_errors=unicode_errors,
        ext_hook=_ext_hook,
        max_buffer_size=max_bytes,
    )


def _check_text(value: str, what: str) -> str:
    """Tags and chunk ids travel on (to Celery, back in acks): they must be valid UTF-8."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(f"{what} is not valid UTF-8") from None
    return value


def ext_value(raw: slice) -> Any:
    """An ext value kept raw by ``ext_hook=slice`` (see :func:`event_seconds`), decoded as the
    other decoders do: an EventTime becomes a Unix time, any other ext type is refused."""
    return _ext_hook(raw.start, raw.stop)


def _check_time(value: object) -> float:
    if type(value) is slice:
        return ext_value(value)  # type: ignore[no-any-return]
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = type(value).__name__
        raise ProtocolError(f"event time must be an integer or EventTime, got {kind}")
    return float(value)


def _check_event(entry: object) -> Event:
    if not isinstance(entry, list | tuple) or len(entry) != 2:
        raise ProtocolError("event must be a [time, record] pair", entry)
    ts, record = entry
    if not isinstance(record, dict):
        raise ProtocolError(f"record must be a map, got {type(record).__name__}")
    return _check_time(ts), record


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one or more concatenated gzip members, refusing output above ``limit``."""
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            piece = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise ProtocolError(f"bad gzip payload: {exc}") from exc
        total += len(piece)
        if total > limit or inflater.unconsumed_tail:
            raise FrameTooLarge(f"decompressed payload exceeds {limit} bytes")
        if not inflater.eof:
            raise ProtocolError("truncated gzip payload")
        out.append(piece)
        data = inflater.unused_data
    return b"".join(out)


def _check_events(entries: Sequence[Any]) -> list[Event]:
    """Every entry a (time, record) pair, checked in whole-list C passes: this runs for
    every line received. Any doubt goes entry by entry, for the precise error."""
    try:
        shapes = set(map(type, entries))
        if shapes == {list}:
            entries, shapes = list(map(tuple, entries)), {tuple}
        if (shapes == {tuple} and set(map(len, entries)) == {2}
                and set(map(type, map(_SECOND, entries))) == {dict}):
            times = list(map(_FIRST, entries))
            kinds = set(map(type, times))
            if kinds <= _TIME_TYPES or (kinds == {slice} and _event_times(times)):
                return entries if type(entries) is list else list(entries)
    except TypeError:  # an entry without a length or items
        pass
    return [_check_event(entry) for entry in entries]


def _event_times(times: list[slice]) -> bool:
    """Whether raw ext values (see :func:`event_seconds`) are all well-formed EventTimes."""
    return (set(map(_START, times)) == {EVENT_TIME_EXT}
            and set(map(len, map(_STOP, times))) == {_EVENT_TIME.size})


def _unpack_sized(payload: bytes, size: int) -> list[Event]:
    """Entries announced by the ``size`` option: one C call with an array header in front.

    msgpack bounds the array length by the bytes given, so a lying ``size`` cannot make it
    allocate more than the payload could hold.
    """
    try:
        entries = msgpack.unpackb(
            _ARRAY32.pack(0xDD, size) + payload, raw=False, strict_map_key=False,
            unicode_errors="replace", ext_hook=slice, use_list=False,
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"packed entries do not hold the {size} events announced "
                            f"({_describe(exc)})") from exc
    return _check_events(entries)


def _unpack_entries(payload: bytes, limit: int) -> list[Event]:
    """Entries without a ``size`` option: read one by one until the payload ends."""
    unpacker = _new_unpacker(max(limit, len(payload)), "replace")
    unpacker.feed(payload)
    try:
        entries = list(unpacker)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types for corrupt input
        raise ProtocolError(f"corrupt packed entries ({_describe(exc)})") from exc
    if unpacker.tell() != len(payload):
        raise ProtocolError("packed entries end with an incomplete event")
    return _check_events(entries)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _check_option(value: object) -> Record:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"option must be a map, got {type(value).__name__}")
    chunk = value.get("chunk")
    if chunk is not None:
        if not isinstance(chunk, str):
            raise ProtocolError("option 'chunk' must be a string")
        _check_text(chunk, "option 'chunk'")
    size = value.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ProtocolError("option 'size' must be a non-negative integer")
    compressed = value.get("compressed")
    if compressed not in (None, "gzip", "text"):
        raise ProtocolError(f"unsupported compression {compressed!r}")
    host = value.get("host")
    if host is not None:
        if not isinstance(host, str) or not host:
            raise ProtocolError("option 'host' must be a non-empty string")
        _check_text(host, "option 'host'")
    return value


def _check_sources(value: object, events: int) -> tuple[tuple[str, int], ...] | None:
    """The ``sources`` option as ``(source, count)`` runs that cover exactly ``events``."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ProtocolError("option 'sources' must be an array of [source, count] pairs")
    runs: list[tuple[str, int]] = []
    for run in value:
        if (not isinstance(run, list | tuple) or len(run) != 2 or not isinstance(run[0], str)
                or not run[0] or type(run[1]) is not int or run[1] < 1):
            raise ProtocolError("option 'sources' must hold [non-empty source, count >= 1] "
                                f"pairs, got {run!r:.80}")
        runs.append((_check_text(run[0], "a source in option 'sources'"), run[1]))
    covered = sum(count for _, count in runs)
    if covered != events:
        raise ProtocolError(f"option 'sources' covers {covered} events but {events} arrived")
    return tuple(runs)


def _check_lines(value: object, events: Sequence[Event]) -> tuple[int, ...] | None:
    """The ``lines`` option: a count >= 1 per event, each ``{"message": text}`` whose text
    holds that many lines (a count of 1 is one record, newlines and all)."""
    if value is None:
        return None
    if (not isinstance(value, list | tuple) or len(value) != len(events)
            or not all(type(n) is int and n >= 1 for n in value)):
        raise ProtocolError(f"option 'lines' must hold one line count >= 1 for each of the "
                            f"{len(events)} events, got {value!r:.80}")
    for index, (count, (_, record)) in enumerate(zip(value, events, strict=True)):
        text = record.get("message") if len(record) == 1 else None
        if type(text) is not str:
            raise ProtocolError(f"with option 'lines' each record must be {{\"message\": text}}; "
                                f"event {index} is not")
        if count > 1 and count_newlines(text) != count - 1:
            raise ProtocolError(f"option 'lines' gives event {index} {count} lines, its message "
                                f"holds {count_newlines(text) + 1}")
    return tuple(value)


def parse_request(obj: object, max_bytes: int) -> ForwardMessage:
    """Validate one decoded msgpack value and turn it into a :class:`ForwardMessage`."""
    if not isinstance(obj, list | tuple) or not 2 <= len(obj) <= 4:
        raise ProtocolError(f"request must be an array of 2-4 items, got {type(obj).__name__}")
    tag, body = obj[0], obj[1]
    if not isinstance(tag, str):
        raise ProtocolError(f"tag must be a string, got {type(tag).__name__}")
    _check_text(tag, "tag")
    if isinstance(body, list):  # Forward mode
        option = _check_option(obj[2] if len(obj) > 2 else None)
        if len(obj) > 3:
            raise ProtocolError("forward mode takes at most 3 items")
        events, mode = _check_events(body), "forward"
    elif isinstance(body, bytes | str):  # (Compressed)PackedForward
        option = _check_option(obj[2] if len(obj) > 2 else None)
        payload = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        mode = "packed"
        if option.get("compressed") == "gzip":
            payload, mode = _gunzip(payload, max_bytes), "compressed"
        size = option.get("size")
        events = (_unpack_sized(payload, size) if size is not None
                  else _unpack_entries(payload, max_bytes))
    else:  # Message mode
        if len(obj) < 3:
            raise ProtocolError("message mode needs [tag, time, record]")
        option = _check_option(obj[3] if len(obj) > 3 else None)
        events, mode = [_check_event((body, obj[2]))], "message"
    size = option.get("size")
    if size is not None and mode != "message" and size != len(events):
        raise ProtocolError(f"option size={size} but {len(events)} events arrived")
    sources = _check_sources(option.get("sources"), len(events))
    lines = _check_lines(option.get("lines"), events)
    return ForwardMessage(tag, events, option.get("chunk"), mode, option.get("host"), sources,
                          lines)


def _malformed(exc: Exception, decoded: list[ForwardMessage]) -> ProtocolError:
    error = ProtocolError(f"malformed msgpack ({_describe(exc)})")
    error.decoded = list(decoded)
    return error


class FrameDecoder:
    """Streaming decoder: feed socket bytes, get complete requests back.

    Bounded: no single frame may exceed ``max_frame_bytes`` (checked as the buffer grows, so
    an oversized frame is refused before it is complete).

    The msgpack unpacker exists only while a frame is incomplete: each one carries a parse
    stack of about 40 KB and keeps its buffer at the largest frame seen, which across
    thousands of idle connections would be most of the gateway's memory.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._unpacker: msgpack.Unpacker | None = None
        self._fed = 0
        self._complete = 0  # offset just past the last complete frame

    def feed(self, data: bytes) -> list[ForwardMessage]:
        unpacker = self._unpacker
        if unpacker is None:
            unpacker = self._unpacker = _new_unpacker(self._max + READ_SIZE, "surrogateescape")
        try:
            unpacker.feed(data)
        except msgpack.BufferFull as exc:
            raise FrameTooLarge(f"frame exceeds MAX_FRAME_BYTES={self._max}") from exc
        self._fed += len(data)
        messages: list[ForwardMessage] = []
        try:
            for obj in unpacker:
                self._complete = unpacker.tell()
                if obj is not None:  # nil: a heartbeat some clients send (v0), ignored
                    messages.append(parse_request(obj, self._max))
        except ProtocolError as exc:
            exc.decoded = list(messages)  # complete requests before the bad one still count
            raise
        except Exception as exc:  # StackError, FormatError, ExtraData, ValueError...
            # No local name for the new error: it would hold this frame in a reference cycle.
            raise _malformed(exc, messages) from exc
        if self._fed == self._complete:  # between frames: let the unpacker go
            self._unpacker, self._fed, self._complete = None, 0, 0
        return messages

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held in the buffer (0 between frames)."""
        return self._fed - self._complete

"""The batch a gateway publishes and a worker scans: the one contract between them.

A batch groups the chunks (client batches with their ack ids) that the gateway coalesced;
each chunk keeps its id so the workers can count it exactly once, however often it is
delivered. Inside a chunk, consecutive lines of the same host and source form one segment
whose lines travel joined with ``"\\n"`` as one string: the gateway joins them in one C call,
the worker scans the joined batch directly, and no per-line object crosses the wire.

A record that itself holds newlines (a multi-line stack trace from Fluent Bit, say) is a
segment of its own with ``count == 1``; every other segment's ``count`` is its number of
newline-free lines, so ``text.count("\\n") == count - 1``.

The batch travels as a claim check: the gateway stores the packed batch under
``keys.batch(id)`` and publishes a Celery task carrying only that key, so Celery, kombu and
the broker move a few bytes per batch instead of base64-in-JSON copies of every line. The
worker deletes the key in the same Redis script that records the batch.

Packed form (msgpack)::

    [2, tag, [[chunk_id, [[host, source, first_time, text, count], ...], truncated], ...],
     reply_to]

``truncated`` counts the chunk's lines the gateway cut at ``MAX_LINE_BYTES``. ``reply_to``
(or nil) names the gateway whose ``keys.counted`` list gets the ids of the recorded chunks,
so it can acknowledge them end to end (``ACK_MODE=counted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from logsig.errors import ProtocolError
from logsig.newlines import count_newlines

VERSION = 2
TASK_NAME = "logsig.scan_batch"


@dataclass(slots=True)
class Segment:
    """Consecutive lines of one ``source`` on one ``host``; ``time`` is the first line's."""

    host: str
    source: str
    time: float
    text: str = ""
    count: int = 0

    @classmethod
    def of(cls, host: str, source: str, time: float, lines: Sequence[str]) -> Segment:
        """A segment of newline-free lines (a line holding a newline needs its own)."""
        return cls(host, source, time, "\n".join(lines), len(lines))

    @property
    def multiline(self) -> bool:
        """A single record with newlines inside: its text is one line, not several."""
        return self.count == 1 and "\n" in self.text

    def lines(self) -> list[str]:
        if self.count <= 1:
            return [self.text] if self.count else []
        return self.text.split("\n")

    def check(self) -> None:
        """Raise :class:`ProtocolError` if ``count`` does not describe ``text``."""
        if self.count < 0 or (self.count == 0 and self.text):
            raise ProtocolError(f"segment count {self.count} for {len(self.text)} characters")
        if self.count > 1 and count_newlines(self.text) != self.count - 1:
            raise ProtocolError(f"segment announces {self.count} lines, holds "
                                f"{count_newlines(self.text) + 1}")


@dataclass(slots=True)
class Chunk:
    """One client batch: lines in arrival order, identified by the client's chunk id."""

    id: str
    segments: list[Segment] = field(default_factory=list)
    truncated: int = 0

    @property
    def line_count(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def text_size(self) -> int:
        """Characters of text, separators included (a batch's size, cheaply)."""
        return sum(len(s.text) for s in self.segments)

    def lines(self) -> list[str]:
        return [line for s in self.segments for line in s.lines()]


class ChunkBuilder:
    """Builds a chunk piece by piece (the general path's lines, or whole blocks of lines
    already joined; the fast paths build segments whole)."""

    def __init__(self, chunk_id: str) -> None:
        self.chunk = Chunk(chunk_id)
        self._key: tuple[str, str] | None = None
        self._time = 0.0
        self._texts: list[str] = []
        self._count = 0

    def add(self, host: str, source: str, ts: float, text: str, count: int = 1) -> None:
        """Append ``count`` lines joined by ``"\\n"`` (by default one line), opening a new
        segment when host or source changes; one line holding newlines (a multi-line
        record) is a segment of its own."""
        if count == 1 and "\n" in text:
            self._close()
            self.chunk.segments.append(Segment(host, source, ts, text, 1))
            return
        if (host, source) != self._key:
            self._close()
            self._key, self._time = (host, source), ts
        self._texts.append(text)
        self._count += count

    def _close(self) -> None:
        if self._texts and self._key is not None:
            self.chunk.segments.append(
                Segment(*self._key, self._time, "\n".join(self._texts), self._count))
        self._key, self._texts, self._count = None, [], 0

    def build(self) -> Chunk:
        self._close()
        return self.chunk


def chunk_of(chunk_id: str, host: str, source: str, ts: float, lines: Sequence[str]) -> Chunk:
    """A chunk of lines from one host and source (tests, benchmarks, the analysis path)."""
    builder = ChunkBuilder(chunk_id)
    for line in lines:
        builder.add(host, source, ts, line)
    return builder.build()


@dataclass(slots=True)
class Batch:
    tag: str
    chunks: list[Chunk] = field(default_factory=list)
    reply_to: str | None = None

    @property
    def line_count(self) -> int:
        return sum(c.line_count for c in self.chunks)

    def pack(self) -> bytes:
        return msgpack.packb([
            VERSION,
            self.tag,
            [[c.id, [[s.host, s.source, s.time, s.text, s.count] for s in c.segments],
              c.truncated] for c in self.chunks],
            self.reply_to,
        ], use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> Batch:
        try:
            obj = msgpack.unpackb(data, raw=False)
            version, tag, chunks, reply_to = obj
            if version != VERSION:
                raise ProtocolError(f"unsupported batch version {version!r}")
            batch = cls(str(tag), [_chunk(c) for c in chunks],
                        None if reply_to is None else str(reply_to))
        except ProtocolError:
            raise
        except (TypeError, ValueError, msgpack.UnpackException) as exc:
            raise ProtocolError(f"malformed batch: {exc}") from exc
        for chunk in batch.chunks:
            for seg in chunk.segments:
                seg.check()
        return batch


def _chunk(obj: Any) -> Chunk:
    cid, segs, truncated = obj
    return Chunk(str(cid), [Segment(str(h), str(src), float(t), _text(text), int(n))
                            for h, src, t, text, n in segs], int(truncated))


def _text(value: object) -> str:
    if type(value) is not str:
        raise ProtocolError(f"segment text must be a string, got {type(value).__name__}")
    return value

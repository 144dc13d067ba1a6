"""The batch a gateway publishes and a worker scans: the one contract between them.

A batch is one Celery task. It groups the chunks (client batches with their ack ids) that
the gateway coalesced; each chunk keeps its id so the workers can count it exactly once,
however often it is delivered. Inside a chunk, consecutive lines of the same host and
source share one segment, so the message stays compact (no per-line dicts).

Wire form (msgpack or JSON friendly)::

    [1, tag, [[chunk_id, [[host, source, first_time, [line, ...]], ...], truncated?], ...],
     reply_to?]

``truncated`` (optional) counts the chunk's lines the gateway cut at ``MAX_LINE_BYTES``.

``reply_to`` (optional) names the Redis list where the worker pushes the ids of the chunks it
has recorded, so the gateway can acknowledge them end to end (``ACK_MODE=counted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logsig.errors import ProtocolError

VERSION = 1
TASK_NAME = "logsig.scan_batch"


@dataclass(slots=True)
class Segment:
    """Consecutive lines of one ``source`` on one ``host``; ``time`` is the first line's."""

    host: str
    source: str
    time: float
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Chunk:
    """One client batch: lines in arrival order, identified by the client's chunk id."""

    id: str
    segments: list[Segment] = field(default_factory=list)
    truncated: int = 0

    @property
    def line_count(self) -> int:
        return sum(len(s.lines) for s in self.segments)

    def add(self, host: str, source: str, ts: float, line: str) -> None:
        """Append a line, opening a new segment when host or source changes."""
        last = self.segments[-1] if self.segments else None
        if last is None or last.host != host or last.source != source:
            last = Segment(host, source, ts)
            self.segments.append(last)
        last.lines.append(line)


def _padded(chunk: Any) -> list[Any]:
    """A chunk's fields with the optional truncated count filled in (0)."""
    fields = list(chunk)
    if len(fields) == 2:
        fields.append(0)
    if len(fields) != 3:
        raise ValueError(f"chunk has {len(fields)} fields")
    return fields


@dataclass(slots=True)
class Batch:
    tag: str
    chunks: list[Chunk] = field(default_factory=list)
    reply_to: str | None = None

    @property
    def line_count(self) -> int:
        return sum(c.line_count for c in self.chunks)

    def encode(self) -> list[Any]:
        out: list[Any] = [
            VERSION,
            self.tag,
            [
                [c.id, [[s.host, s.source, s.time, s.lines] for s in c.segments],
                 *([c.truncated] if c.truncated else [])]
                for c in self.chunks
            ],
        ]
        if self.reply_to is not None:
            out.append(self.reply_to)
        return out

    @classmethod
    def decode(cls, obj: Any) -> Batch:
        try:
            version, tag, chunks, *rest = obj
            if len(rest) > 1:
                raise ValueError(f"{len(obj)} fields")
            if version != VERSION:
                raise ProtocolError(f"unsupported batch version {version!r}")
            return cls(
                str(tag),
                [
                    Chunk(str(cid), [Segment(str(h), str(src), float(t), list(lines))
                                     for h, src, t, lines in segs], int(truncated[0]))
                    for cid, segs, *truncated in (_padded(c) for c in chunks)
                ],
                str(rest[0]) if rest and rest[0] is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed batch: {exc}", obj) from exc

"""Write-ahead records of chunks built from file lines, so a restart can resend them.

Before a chunk of file lines is first sent, its id and the exact byte ranges it covers go
into the registry as an :class:`Intent`; the ack removes it. A restarted agent rebuilds
each pending intent's lines from those ranges (``agents.replay``) and resends them under
the original id, which the workers deduplicate, instead of re-reading them as new lines.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.block import Block, FileKey

SAMPLE = 4096
"""Bytes from each end of a segment's encoded entries that its fingerprint covers."""


def fingerprint(entries: bytes) -> int:
    """A cheap check that rebuilt entries are the ones first sent: length and both ends.

    It guards against other bytes at the same offsets (a file truncated and written again
    while the agent was down); hashing every byte would cost ~4% of the agent's throughput.
    """
    if len(entries) <= 2 * SAMPLE:
        return zlib.crc32(entries) ^ len(entries)
    return zlib.crc32(entries[-SAMPLE:], zlib.crc32(entries[:SAMPLE])) ^ len(entries)


@dataclass(frozen=True, slots=True)
class Segment:
    """One block of a chunk: lines ``start..end`` of a file, read at ``time`` as ``path``."""

    path: str
    key: FileKey
    start: int
    end: int
    lines: int
    cut: bool
    time: float
    check: int

    @classmethod
    def of(cls, block: Block, entries: bytes) -> Segment:
        if block.key is None or not block.lines:
            raise ValueError(f"block of {block.source!r} holds no file lines")
        return cls(block.source, block.key, block.start, block.end, len(block.lines),
                   block.cut, block.time, fingerprint(entries))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "dev": self.key[0], "ino": self.key[1], "start": self.start,
                "end": self.end, "lines": self.lines, "cut": self.cut, "time": self.time,
                "check": self.check}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Segment:
        return cls(str(doc["path"]), (int(doc["dev"]), int(doc["ino"])), int(doc["start"]),
                   int(doc["end"]), int(doc["lines"]), bool(doc["cut"]), float(doc["time"]),
                   int(doc["check"]))


@dataclass(frozen=True, slots=True)
class Intent:
    """A chunk id and, in order, the segments its frame carries."""

    chunk: str
    segments: tuple[Segment, ...]

    @classmethod
    def of(cls, chunk: str, blocks: Sequence[Block], entries: Sequence[bytes]) -> Intent:
        return cls(chunk, tuple(Segment.of(b, e) for b, e in zip(blocks, entries, strict=True)
                                if b.lines))

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self.segments)

    def to_json(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "segments": [s.to_json() for s in self.segments]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Intent:
        return cls(str(doc["chunk"]), tuple(Segment.from_json(s) for s in doc["segments"]))

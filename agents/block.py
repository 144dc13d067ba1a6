"""The unit that moves from sources to the batcher: a block of lines read together.

Lines travel in blocks (one per read, not one per line) so the queue, the batcher and the
encoder pay their per-item cost once per block. File blocks also carry each line's end
offset, so whichever batch ends up holding a line knows how far into its file it reaches.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
"""Bytes per read: large, so splitting and decoding run in bulk."""
MAX_LINE = READ_SIZE
"""A line still unterminated after this many bytes is shipped as it is (bounds memory)."""

FileKey = tuple[int, int]
"""A file's identity, ``(st_dev, st_ino)``: survives renames, changes on re-creation."""


@dataclass(slots=True)
class Block:
    """Lines from one source, read at ``time`` (Unix seconds, the events' EventTime).

    For file sources ``key`` is the file's identity and ``ends[i]`` the byte offset just
    past line ``i`` (its newline included); both are None for stdin and the generator.
    """

    source: str
    time: float
    lines: list[str]
    ends: list[int] | None = None
    key: FileKey | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def split(self, n: int) -> tuple[Block, Block]:
        """The first ``n`` lines and the rest, as two blocks of the same source."""
        ends = self.ends
        head = Block(self.source, self.time, self.lines[:n], None if ends is None else ends[:n],
                     self.key)
        rest = Block(self.source, self.time, self.lines[n:], None if ends is None else ends[n:],
                     self.key)
        return head, rest


Sink = Callable[[Block], Awaitable[None]]
"""Where a source hands its blocks; awaiting it is the backpressure."""


class Source(Protocol):
    """Anything that produces blocks until it runs dry (``finite``) or is stopped."""

    finite: bool

    async def run(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...


def split_lines(data: bytes, base: int = 0) -> tuple[list[str], list[int]]:
    """Split complete lines (``data`` ends with a newline) and return them with end offsets.

    Strips ``\\n`` and ``\\r\\n``. Invalid UTF-8 becomes U+FFFD; it never swallows a newline,
    so decoding all of ``data`` at once yields exactly one string per byte line.
    """
    raw = data.split(b"\n")
    raw.pop()  # the empty piece after the final newline
    text = data.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    lines.pop()
    ends = [base + c + i for i, c in enumerate(accumulate(map(len, raw)), 1)]
    return lines, ends


def decode_partial(data: bytes) -> str:
    """An unterminated last line as text (a trailing ``\\r`` of a half-written CRLF dropped)."""
    return data.decode("utf-8", "replace").removesuffix("\r")


class LineBuffer:
    """Turns a byte stream into complete lines, holding back an unterminated last line.

    ``offset`` is the stream position just past the last line handed out, so each line's
    end offset is known and a held partial line is never counted as read.
    """

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.pending = b""

    @property
    def position(self) -> int:
        """Stream position of the next byte to feed."""
        return self.offset + len(self.pending)

    def feed(self, data: bytes) -> tuple[list[str], list[int]]:
        """Add ``data``; return the lines it completed and their end offsets."""
        buf = self.pending + data if self.pending else data
        cut = buf.rfind(b"\n") + 1
        if not cut:
            self.pending = buf
            if len(buf) < MAX_LINE:
                return [], []
            log.warning("line longer than %d bytes, shipped in pieces", MAX_LINE)
            return self.take()
        self.pending = buf[cut:]
        lines, ends = split_lines(buf[:cut], self.offset)
        self.offset += cut
        return lines, ends

    def take(self) -> tuple[list[str], list[int]]:
        """The held unterminated line as a line of its own (idle, rotated, or shutting down)."""
        if not self.pending:
            return [], []
        data, self.pending = self.pending, b""
        self.offset += len(data)
        return [decode_partial(data)], [self.offset]

"""The unit that moves from sources to the batcher: a block of lines read together.

Lines travel in blocks (one per read, not one per line) so the queue, the batcher and the
encoder pay their per-item cost once per block. File blocks also know each line's end
offset, so whichever batch ends up holding a line knows how far into its file it reaches.
For plain text (ASCII, ``"\\n"`` endings: almost every log) those offsets follow from the
lines' lengths and are only computed where a block is cut (:meth:`Block.offset_after`);
building a list of them for every line read cost a third of splitting the lines.

Plain lines are not even split: they stay the bytes read (:class:`JoinedLines`), which are
already the text the frame carries. A string per line, made only to be joined again for the
frame, cost about 40 % of the agent's CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Protocol, overload

from logsig.newlines import count_newlines, nth_newline

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
"""Bytes per read: large, so splitting and decoding run in bulk."""
MAX_LINE = READ_SIZE
"""A line still unterminated after this many bytes is shipped as it is (bounds memory)."""
_PLUS_ONE = (1).__add__

FileKey = tuple[int, int]
"""A file's identity, ``(st_dev, st_ino)``: survives renames, changes on re-creation."""


class JoinedLines(Sequence[str]):
    """Plain lines as they were read: ASCII bytes, each line ending with ``b"\\n"``.

    A sequence of ``str`` like a list of the lines, but the list is only made if something
    iterates or indexes it (tests, a replay's older encodings). The encoder takes
    :attr:`data` as the event's text as it is, and a cut (:meth:`cut`) finds its place
    with ``memchr`` instead of summing line lengths.
    """

    __slots__ = ("_count", "_list", "data")

    def __init__(self, data: bytes, count: int) -> None:
        if count < 1 or not data.endswith(b"\n"):
            raise ValueError("joined lines need at least one line, newline-terminated")
        self.data = data
        self._count = count
        self._list: list[str] | None = None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step == 1 and stop - start >= 1:
                if (start, stop) == (0, self._count):
                    return self
                a, b = self.offset_of(start), self.offset_of(stop)
                return JoinedLines(self.data[a:b], stop - start)
        return self.lines()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JoinedLines):
            return self.data == other.data
        if isinstance(other, list):
            return self.lines() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JoinedLines({self._count} lines, {len(self.data)} bytes)"

    def lines(self) -> list[str]:
        """The lines as a list (made once)."""
        if self._list is None:
            self._list = _terminated_lines(self.data.decode("ascii"))
        return self._list

    def offset_of(self, n: int) -> int:
        """Where line ``n`` begins in :attr:`data` (its size for ``n == len(self)``)."""
        if n <= 0:
            return 0
        if n >= self._count:
            return len(self.data)
        return nth_newline(self.data, n, self._count) + 1

    def cut(self, n: int) -> tuple[JoinedLines, JoinedLines]:
        """The first ``n`` lines and the rest (``0 < n < len(self)``)."""
        at = self.offset_of(n)
        return JoinedLines(self.data[:at], n), JoinedLines(self.data[at:], self._count - n)


@dataclass(slots=True)
class Block:
    """Lines from one source, read at ``time`` (Unix seconds, the events' EventTime).

    For file sources ``key`` is the file's identity, ``start`` the offset where the block's
    bytes begin and ``ends[i]`` the offset just past line ``i`` (its newline included);
    ``cut`` says the last line ended without a newline (see :meth:`LineBuffer.take`). With
    these the exact lines can be rebuilt from the file (``agents.replay``). ``ends`` is None
    when the lines are plain (each line's bytes are its characters and one ``"\\n"``, starting
    at ``start``, none cut), and for stdin and the generator, whose ``key`` is None too.

    ``stop`` is the offset just past the last line when the reader that split the lines out
    of the file's bytes knows it: the block's end then costs nothing (summing the lengths of
    its lines cost a tenth of the agent's time), and no line can hold a newline.
    """

    source: str
    time: float
    lines: Sequence[str]
    ends: list[int] | None = None
    key: FileKey | None = None
    start: int = 0
    cut: bool = False
    stop: int | None = None

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def end(self) -> int:
        """The file offset just past the last line (file blocks)."""
        return self.offset_after(len(self.lines))

    def all_ends(self) -> list[int]:
        """Every line's end offset (file blocks), computed if the lines are plain."""
        return plain_ends(self.lines, self.start) if self.ends is None else self.ends

    def offset_after(self, n: int) -> int:
        """The file offset just past the first ``n`` lines (``start`` if ``n`` is 0)."""
        if not n:
            return self.start
        if self.ends is not None:
            return self.ends[n - 1]
        if isinstance(self.lines, JoinedLines):
            return self.start + self.lines.offset_of(n)
        # Plain: see the class docstring. From whichever end has fewer lines to sum.
        count = len(self.lines)
        if self.stop is not None and 2 * n >= count:
            return self.stop - sum(map(len, islice(self.lines, n, None))) - (count - n)
        return self.start + sum(map(len, islice(self.lines, n))) + n

    def split(self, n: int) -> tuple[Block, Block]:
        """The first ``n`` lines and the rest, as two blocks of the same source."""
        ends = self.ends
        lines = self.lines
        head_lines: Sequence[str]
        rest_lines: Sequence[str]
        if isinstance(lines, JoinedLines) and 0 < n < len(lines):
            head_lines, rest_lines = lines.cut(n)
        else:
            head_lines, rest_lines = lines[:n], lines[n:]
        if self.key is None:
            return (Block(self.source, self.time, head_lines),
                    Block(self.source, self.time, rest_lines))
        middle = self.offset_after(n)
        head_ends, rest_ends = (None, None) if ends is None else (ends[:n], ends[n:])
        head = Block(self.source, self.time, head_lines, head_ends, self.key, self.start,
                     stop=None if self.stop is None else middle)
        rest = Block(self.source, self.time, rest_lines, rest_ends, self.key, middle,
                     self.cut, self.stop)
        return head, rest


Sink = Callable[[Block], Awaitable[None]]
"""Where a source hands its blocks; awaiting it is the backpressure."""


class Source(Protocol):
    """Anything that produces blocks until it runs dry (``finite``) or is stopped."""

    finite: bool

    async def run(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...


def plain_ends(lines: Sequence[str], start: int) -> list[int]:
    """End offsets of plain lines (see :class:`Block`) whose bytes begin at ``start``."""
    ends = list(accumulate(map(_PLUS_ONE, map(len, lines)), initial=start))
    del ends[0]
    return ends


def split_lines(data: bytes, base: int = 0) -> tuple[Sequence[str], list[int] | None]:
    """Split complete lines (``data`` ends with a newline) and return them with end offsets,
    or with None for plain lines, whose offsets follow from their lengths (:class:`Block`).

    Plain lines (ASCII, no ``\\r``) come back unsplit, as :class:`JoinedLines`. Strips
    ``\\n`` and ``\\r\\n``. Invalid UTF-8 becomes U+FFFD; it never swallows a newline, so
    decoding all of ``data`` at once yields exactly one string per byte line.
    """
    if data.isascii() and b"\r" not in data:
        return JoinedLines(data, count_newlines(data)), None
    text = data.decode("utf-8", "replace")
    resplit = "\r" in text  # CRLF: the lines are the text's pieces without their "\r"
    # Byte length of each line with its newline; for ASCII the text's pieces are the bytes'.
    lines: list[str]
    if data.isascii():
        lines = _terminated_lines(text)
        lengths = map(len, lines)
    else:
        raw = data.split(b"\n")
        raw.pop()
        lengths = map(len, raw)
        resplit = True
    ends = list(accumulate(map(_PLUS_ONE, lengths), initial=base))
    del ends[0]
    if resplit:
        lines = _terminated_lines(text.replace("\r\n", "\n"))
    return lines, ends


def _terminated_lines(text: str) -> list[str]:
    """The lines of ``text``, every one of which ends with ``"\\n"``."""
    lines = text.split("\n")
    lines.pop()  # the empty piece after the last newline
    return lines


def decode_partial(data: bytes) -> str:
    """An unterminated last line as text (a trailing ``\\r`` of a half-written CRLF dropped)."""
    return data.decode("utf-8", "replace").removesuffix("\r")


class LineBuffer:
    """Turns a byte stream into complete lines, holding back an unterminated last line.

    ``offset`` is the stream position just past the last line handed out, so each line's
    end offset is known and a held partial line is never counted as read.

    After a line went out unterminated (:meth:`take`), a newline that follows at once is
    that line's late terminator: it is swallowed rather than shipped as an empty line.
    ``after_cut`` carries that state; a reader resuming at ``offset`` sets it when the byte
    before ``offset`` is not a newline, so a restart (or a replay) splits exactly the same.
    """

    def __init__(self, offset: int = 0, *, after_cut: bool = False) -> None:
        self.offset = offset
        self.pending = b""
        self.after_cut = after_cut
        self.cut = False
        """Whether the last line handed out ended without a newline."""

    @property
    def position(self) -> int:
        """Stream position of the next byte to feed."""
        return self.offset + len(self.pending)

    def feed(self, data: bytes) -> tuple[Sequence[str], list[int] | None]:
        """Add ``data``; return the lines it completed and their end offsets (None if the
        lines are plain and begin at the offset before the call: see :class:`Block`)."""
        buf = self.pending + data if self.pending else data
        begin = self.offset
        if self.after_cut:
            buf = self._swallow(buf)
        cut = buf.rfind(b"\n") + 1
        if not cut:
            self.pending = buf
            if len(buf) < MAX_LINE:
                return [], []
            log.warning("line longer than %d bytes, shipped in pieces", MAX_LINE)
            return self.take()
        self.pending = buf[cut:]
        lines, ends = split_lines(buf[:cut], self.offset)
        if ends is None and self.offset != begin:  # a late newline swallowed before them
            ends = plain_ends(lines, self.offset)
        self.offset += cut
        self.cut = False
        return lines, ends

    def take(self) -> tuple[list[str], list[int]]:
        """The held unterminated line as a line of its own (idle, rotated, or shutting down).

        A lone ``\r`` right after a cut is half of that line's late CRLF: it is kept.
        """
        if not self.pending or (self.after_cut and self.pending == b"\r"):
            return [], []
        data, self.pending = self.pending, b""
        self.offset += len(data)
        self.after_cut = self.cut = True
        return [decode_partial(data)], [self.offset]

    def _swallow(self, buf: bytes) -> bytes:
        """``buf`` without the late newline of a line already shipped unterminated."""
        if not buf or buf == b"\r":
            return buf  # undecided until the next byte
        self.after_cut = False
        skip = 1 if buf.startswith(b"\n") else 2 if buf.startswith(b"\r\n") else 0
        self.offset += skip
        return buf[skip:]

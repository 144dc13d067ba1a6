"""Cut an upload into at most N large chunks on line boundaries, while it streams in.

Cut ``k`` (k = 1..N-1) is the first newline at or after byte ``k * ceil(size / N) - 1`` and
after the previous cut, so chunks are nearly equal and never split a line; a line longer
than a chunk only makes its chunk longer. A chunk is never empty, so a small file (or one
whose last cut falls on its final byte) gets fewer than N chunks. :class:`Splitter` does the
same incrementally, piece by piece, so the gateway never holds the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator


class Splitter:
    """Feed the upload's bytes in any pieces; get back ``(chunk index, bytes)`` pieces."""

    def __init__(self, size: int, chunks: int) -> None:
        if chunks < 1:
            raise ValueError("chunks must be >= 1")
        self._n = chunks
        self._target = max(1, -(-size // chunks))
        self._index = 0
        self._pos = 0  # file offset of the next byte fed
        self._threshold = self._target - 1  # a newline at or after this offset ends the chunk
        self.chunks_seen = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        start = 0
        while start < len(data):
            if self.chunks_seen <= self._index:
                self.chunks_seen = self._index + 1
            if self._index == self._n - 1:
                yield self._index, data[start:]
                break
            nl = data.find(b"\n", max(start, self._threshold - self._pos))
            if nl < 0:
                yield self._index, data[start:]
                break
            yield self._index, data[start:nl + 1]
            self._index += 1
            cut = self._pos + nl  # file offset of the newline that ended the chunk
            self._threshold = max((self._index + 1) * self._target - 1, cut + 1)
            start = nl + 1
        self._pos += len(data)


def split_bytes(data: bytes, chunks: int) -> list[bytes]:
    """The whole-buffer form of :class:`Splitter` (same cuts), for tests and benchmarks."""
    splitter = Splitter(len(data), chunks)
    parts: list[bytearray] = []
    for index, piece in splitter.feed(data):
        while len(parts) <= index:
            parts.append(bytearray())
        parts[index] += piece
    return [bytes(p) for p in parts]

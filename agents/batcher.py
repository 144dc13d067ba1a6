"""Size-or-time batching with no I/O and no clock of its own.

The caller passes ``now`` (any monotonic clock), so tests pin both triggers exactly and
the asyncio driver only has to sleep until :attr:`Batcher.deadline`.
"""

from __future__ import annotations

from typing import Generic, Protocol, Self, TypeVar


class Splittable(Protocol):
    """A run of lines that can be cut after its first ``n`` lines (see ``Block``)."""

    def __len__(self) -> int: ...

    def split(self, n: int) -> tuple[Self, Self]: ...


T = TypeVar("T", bound=Splittable)


class Batcher(Generic[T]):
    """Flushes at ``size`` lines or ``timeout`` seconds after the first unflushed line.

    Items may hold many lines; an item that crosses the size boundary is split so every
    size-triggered batch has exactly ``size`` lines.
    """

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1 or timeout <= 0:
            raise ValueError("size must be >= 1 and timeout > 0")
        self.size = size
        self.timeout = timeout
        self._items: list[T] = []
        self._count = 0
        self.deadline: float | None = None
        """When the open batch must go out by time; None while it is empty."""

    def __len__(self) -> int:
        return self._count

    def add(self, item: T, now: float) -> list[list[T]]:
        """Buffer ``item``; return the batches that became full (often none)."""
        full: list[list[T]] = []
        rest: T | None = item
        while rest is not None and len(rest):
            if self.deadline is None:
                self.deadline = now + self.timeout
            room = self.size - self._count
            piece, rest = (rest, None) if len(rest) <= room else rest.split(room)
            self._items.append(piece)
            self._count += len(piece)
            if self._count == self.size:
                full.append(self._take())
        return full

    def due(self, now: float) -> list[T] | None:
        """The open batch if its deadline has come, else None."""
        if self.deadline is not None and now >= self.deadline:
            return self._take()
        return None

    def flush(self) -> list[T] | None:
        """The open batch regardless of time (shutdown, end of input); None if empty."""
        return self._take() if self._count else None

    def _take(self) -> list[T]:
        items = self._items
        self._items, self._count, self.deadline = [], 0, None
        return items


def halve(batch: list[T]) -> tuple[list[T], list[T]]:
    """The first half of a batch's lines and the rest, order kept (for oversized frames)."""
    want = sum(map(len, batch)) // 2
    head: list[T] = []
    rest = list(batch)
    while want and rest:
        item = rest.pop(0)
        if len(item) > want:
            item, tail = item.split(want)
            rest.insert(0, tail)
        head.append(item)
        want -= len(item)
    return head, rest

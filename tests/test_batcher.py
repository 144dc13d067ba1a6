"""The batcher's two triggers, pinned exactly with an injected clock."""

from __future__ import annotations

import pytest

from agents.batcher import Batcher, halve
from agents.block import Block


def one(line: str) -> Block:
    return Block("test", 0.0, [line])


def lines_of(batch: list[Block] | None) -> list[str]:
    assert batch is not None
    return [line for block in batch for line in block.lines]


def test_size_flushes_at_the_nth_line_not_before() -> None:
    b: Batcher[Block] = Batcher(size=3, timeout=10.0)
    assert b.add(one("a"), now=0.0) == []
    assert b.add(one("b"), now=0.1) == []
    assert b.due(0.2) is None
    [batch] = b.add(one("c"), now=0.2)
    assert lines_of(batch) == ["a", "b", "c"]
    assert len(b) == 0 and b.deadline is None


def test_timeout_flushes_at_exactly_first_plus_timeout() -> None:
    b: Batcher[Block] = Batcher(size=100, timeout=2.0)
    b.add(one("a"), now=5.0)
    b.add(one("b"), now=6.5)  # a later line does not move the deadline
    assert b.deadline == 7.0
    assert b.due(6.999999) is None
    assert lines_of(b.due(7.0)) == ["a", "b"]
    assert b.due(100.0) is None  # nothing open


def test_timer_restarts_from_the_next_first_line() -> None:
    b: Batcher[Block] = Batcher(size=2, timeout=1.0)
    b.add(one("a"), now=0.0)
    assert len(b.add(one("b"), now=0.5)) == 1  # size flush clears the timer
    assert b.deadline is None
    b.add(one("c"), now=3.0)
    assert b.deadline == 4.0
    assert b.due(3.9) is None
    assert lines_of(b.due(4.0)) == ["c"]
    b.add(one("d"), now=10.0)
    assert b.deadline == 11.0


def test_big_block_is_split_into_exact_size_batches() -> None:
    b: Batcher[Block] = Batcher(size=4, timeout=1.0)
    b.add(one("x"), now=0.0)
    block = Block("f", 1.0, [str(i) for i in range(10)], list(range(1, 11)), (1, 2))
    batches = b.add(block, now=0.5)
    assert [lines_of(x) for x in batches] == [["x", "0", "1", "2"], ["3", "4", "5", "6"]]
    assert batches[1][0].all_ends() == [4, 5, 6, 7]  # offsets travel with their lines
    assert len(b) == 3 and b.deadline == 1.5  # the rest starts a new batch, timed from now
    assert lines_of(b.flush()) == ["7", "8", "9"]
    assert b.flush() is None


def test_empty_block_does_not_start_the_timer() -> None:
    b: Batcher[Block] = Batcher(size=2, timeout=1.0)
    assert b.add(Block("s", 0.0, []), now=0.0) == []
    assert b.deadline is None


@pytest.mark.parametrize(("size", "timeout"), [(0, 1.0), (1, 0.0)])
def test_rejects_nonsense_limits(size: int, timeout: float) -> None:
    with pytest.raises(ValueError):
        Batcher(size, timeout)


def test_halve_splits_lines_evenly_in_order() -> None:
    batch = [Block("a", 0, ["1", "2", "3"]), Block("b", 0, ["4"]), Block("c", 0, ["5", "6"])]
    head, rest = halve(batch)
    assert (lines_of(head), lines_of(rest)) == (["1", "2", "3"], ["4", "5", "6"])
    head, rest = halve([Block("a", 0, ["1", "2", "3", "4", "5"])])
    assert (lines_of(head), lines_of(rest)) == (["1", "2"], ["3", "4", "5"])

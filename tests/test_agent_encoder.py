"""Frames the agent sends decode with the shared codec; the retry backoff is bounded."""

from __future__ import annotations

import random

import msgpack
import pytest

from agents.block import Block, JoinedLines
from agents.client import backoff, new_chunk_id
from agents.encoder import FrameEncoder
from logsig.forward import FrameDecoder, pack_event

LINES = ["plain", "ünïcödé", "x" * 70_000, ""]


def test_entries_are_one_block_event_byte_for_byte() -> None:
    block = Block("/var/log/app.log", 1_700_000_000.9, LINES)
    expected = msgpack.packb([1_700_000_000, {"message": "\n".join(LINES)}])
    assert FrameEncoder("logsig", "agent-1").entries(block) == expected
    assert FrameEncoder("logsig", "agent-1").entries(Block("stdin", 1.0, [])) == b""


def test_joined_lines_pack_as_their_text() -> None:
    """Plain lines kept as read pack to the very bytes of the same lines joined as a str
    (every str header size), so fingerprints of chunks sent either way agree."""
    encoder = FrameEncoder("logsig", "agent-1")
    for lines in (["a"], [""], ["x" * 40], ["y" * 300, "z"], [f"line {i}" for i in range(9000)]):
        data = "".join(f"{line}\n" for line in lines).encode()
        joined = Block("/f", 7.9, JoinedLines(data, len(lines)))
        assert encoder.entries(joined) == encoder.entries(Block("/f", 7.9, lines))
        frame = encoder.encode([joined], "c1")
        assert frame == encoder.encode([Block("/f", 7.9, lines)], "c1")


def test_a_line_holding_a_newline_is_refused_where_it_is_encoded() -> None:
    with pytest.raises(ValueError, match="a line of stdin holds a newline"):
        FrameEncoder("logsig", "h").entries(Block("stdin", 1.0, ["a", "b\nc"]))


def test_lean_entries_are_what_the_previous_agents_sent() -> None:
    block = Block("/var/log/app.log", 1_700_000_000.9, LINES)
    expected = b"".join(msgpack.packb([1_700_000_000, {"message": line}]) for line in LINES)
    encoder = FrameEncoder("logsig", "agent-1")
    assert encoder.lean_entries(block) == expected
    assert encoder.earlier_entries(block) == (expected, encoder.legacy_entries(block))


def test_legacy_entries_are_what_earlier_agents_sent() -> None:
    block = Block("/var/log/app.log", 1_700_000_000.123456, LINES)
    record = {"source": "/var/log/app.log", "host": "agent-1"}
    expected = b"".join(pack_event(block.time, {"message": line, **record})
                        for line in block.lines)
    assert FrameEncoder("logsig", "agent-1").legacy_entries(block) == expected


def test_frame_is_one_packed_forward_with_an_event_per_block() -> None:
    blocks = [Block("stdin", 1.5, ["a", "b"]), Block("stdin", 1.75, ["", "d", "e"]),
              Block("generator", 2.25, ["c"]), Block("stdin", 3.0, [])]
    chunk = new_chunk_id()
    frame = FrameEncoder("my.tag", "h").encode(blocks, chunk)
    [msg] = FrameDecoder(1 << 20).feed(frame)
    assert (msg.tag, msg.chunk, msg.mode) == ("my.tag", chunk, "packed")
    assert msg.events == [(1, {"message": "a\nb"}), (1, {"message": "\nd\ne"}),
                          (2, {"message": "c"})]
    assert (msg.host, msg.sources, msg.lines) == ("h", (("stdin", 2), ("generator", 1)),
                                                  (2, 3, 1))
    assert msg.line_count == 6
    options = msgpack.unpackb(frame)[2]
    assert options == {"size": 3, "chunk": chunk, "host": "h",
                       "sources": [["stdin", 2], ["generator", 1]], "lines": [2, 3, 1]}


def test_chunk_ids_are_unique() -> None:
    assert len({new_chunk_id() for _ in range(1000)}) == 1000


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff(n, 0.2, 5.0, rng) for n in range(12)]
    bases = [min(5.0, 0.2 * 2**n) for n in range(12)]
    assert all(0.75 * b <= d <= b for d, b in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    assert backoff(10_000, 0.2, 5.0) <= 5.0

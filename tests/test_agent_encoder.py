"""Frames the agent sends decode with the shared codec; the retry backoff is bounded."""

from __future__ import annotations

import random

from agents.block import Block
from agents.client import backoff, new_chunk_id
from agents.encoder import FrameEncoder
from logsig.forward import FrameDecoder, pack_event


def test_entries_match_the_shared_codec_byte_for_byte() -> None:
    block = Block("/var/log/app.log", 1_700_000_000.123456, ["plain", "ünïcödé", "x" * 70_000])
    record = {"source": "/var/log/app.log", "host": "agent-1"}
    expected = b"".join(pack_event(block.time, {"message": line, **record})
                        for line in block.lines)
    assert FrameEncoder("logsig", "agent-1").entries(block) == expected


def test_frame_is_one_packed_forward_with_size_and_chunk() -> None:
    blocks = [Block("stdin", 1.5, ["a", "b"]), Block("generator", 2.25, ["c"]),
              Block("stdin", 3.0, [])]
    chunk = new_chunk_id()
    frame = FrameEncoder("my.tag", "h").encode(blocks, chunk)
    [msg] = FrameDecoder(1 << 20).feed(frame)
    assert (msg.tag, msg.chunk, msg.mode) == ("my.tag", chunk, "packed")
    assert msg.events == [(1.5, {"message": "a", "source": "stdin", "host": "h"}),
                          (1.5, {"message": "b", "source": "stdin", "host": "h"}),
                          (2.25, {"message": "c", "source": "generator", "host": "h"})]


def test_chunk_ids_are_unique() -> None:
    assert len({new_chunk_id() for _ in range(1000)}) == 1000


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff(n, 0.2, 5.0, rng) for n in range(12)]
    bases = [min(5.0, 0.2 * 2**n) for n in range(12)]
    assert all(0.75 * b <= d <= b for d, b in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    assert backoff(10_000, 0.2, 5.0) <= 5.0

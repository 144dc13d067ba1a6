"""The packed batch between gateway and workers: round trip, segments, refusals."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsig.batch import Batch, Chunk, ChunkBuilder, Segment, chunk_of
from logsig.errors import ProtocolError


def test_round_trip_keeps_segments_truncated_counts_and_reply_to() -> None:
    a = chunk_of("c1", "h", "/f", 1.5, ["one", "", "three"])
    a.truncated = 2
    batch = Batch("t", [a, Chunk("c2")], reply_to="gw")
    back = Batch.unpack(batch.pack())
    assert back == batch
    assert back.chunks[0].lines() == ["one", "", "three"] and back.line_count == 3
    assert Batch.unpack(Batch("t").pack()).reply_to is None


def test_builder_opens_segments_on_host_or_source_change_and_isolates_multiline_records() -> None:
    b = ChunkBuilder("c")
    for host, source, line in [("h1", "a", "x"), ("h1", "a", "y"), ("h2", "a", "z"),
                               ("h2", "a", "trace\n  at Foo"), ("h2", "a", "w"), ("h2", "b", "v")]:
        b.add(host, source, 1.0, line)
    chunk = b.build()
    assert [(s.host, s.source, s.count, s.multiline) for s in chunk.segments] == [
        ("h1", "a", 2, False), ("h2", "a", 1, False), ("h2", "a", 1, True),
        ("h2", "a", 1, False), ("h2", "b", 1, False)]
    assert chunk.lines() == ["x", "y", "z", "trace\n  at Foo", "w", "v"]
    assert chunk.line_count == 6


@given(st.lists(st.text(st.characters(blacklist_characters="\n"), max_size=20), max_size=30))
def test_segment_of_lines_gives_the_lines_back(lines: list[str]) -> None:
    seg = Segment.of("h", "s", 0.0, lines)
    seg.check()
    assert seg.lines() == lines and seg.count == len(lines)


@pytest.mark.parametrize("bad", [
    [1, "t", [], None],                                    # old version
    [2, "t", [["c", [["h", "s", 1.0, "a\nb", 3]], 0]], None],  # count does not match
    [2, "t", [["c", [["h", "s", 1.0, "a", 0]], 0]], None],      # text without lines
    [2, "t", [["c", [["h", "s", 1.0, b"a", 1]], 0]], None],     # bytes, not text
    [2, "t", [["c", [["h", "s", 1.0, "a"]], 0]], None],         # missing count
    [2, "t", "nope", None],
    "garbage",
])
def test_malformed_batches_are_protocol_errors(bad: object) -> None:
    with pytest.raises(ProtocolError):
        Batch.unpack(msgpack.packb(bad, use_bin_type=True))


def test_bytes_that_are_not_msgpack_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Batch.unpack(b"\xc1\xc1")


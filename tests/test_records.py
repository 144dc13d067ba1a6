"""Forward events to batch chunks: the whole-list fast path gives what the general path gives."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.block import Block
from agents.encoder import FrameEncoder
from gateway.limits import TRUNCATED_MARKER, truncate
from gateway.records import _general_chunk, _may_hold_long_line, message_to_chunk
from logsig import forward
from logsig.batch import Chunk
from logsig.forward import ForwardMessage

LIMIT = 1 << 24


def decoded(events: list[tuple[float, dict]], chunk: str = "c1") -> ForwardMessage:
    """The events as the gateway sees them: a PackedForward frame through the decoder."""
    entries = b"".join(forward.pack_event(ts, rec) for ts, rec in events)
    frame = forward.encode_packed_forward("app", entries, len(events), chunk)
    (message,) = forward.FrameDecoder(LIMIT).feed(frame)
    return message


def _blocks(runs: list[tuple[str, list[str]]]) -> list[Block]:
    return [Block(source, 1_700_000_000.0 + n, lines) for n, (source, lines) in enumerate(runs)]


def lean(runs: list[tuple[str, list[str]]], host: str | None = "web1") -> ForwardMessage:
    """Lines as the previous agents sent them: a ``{"message"}`` record per line, host and
    sources as options."""
    blocks = _blocks(runs)
    entries = b"".join(FrameEncoder("app", "unused").lean_entries(b) for b in blocks)
    option = {"size": sum(map(len, blocks)), "chunk": "c1",
              "sources": [[b.source, len(b)] for b in blocks]}
    if host is not None:  # else a client that names its sources but not its host
        option["host"] = host
    (message,) = forward.FrameDecoder(LIMIT).feed(msgpack.packb(["app", entries, option]))
    return message


def agent(runs: list[tuple[str, list[str]]], host: str = "web1") -> ForwardMessage:
    """Lines as our agents send them: an event per block, with the ``lines`` option."""
    frame = FrameEncoder("app", host).encode(_blocks(runs), "c1")
    (message,) = forward.FrameDecoder(LIMIT).feed(frame)
    return message


def general(message: ForwardMessage, max_line_bytes: int = 0) -> Chunk:
    return _general_chunk(message.chunk or "", message, "10.0.0.9", max_line_bytes)


def test_agent_records_take_one_segment_with_the_first_event_time() -> None:
    events = [(1700000000.25 + n, {"message": f"line {n}", "host": "web1", "source": "/a.log"})
              for n in range(5)]
    chunk = message_to_chunk(decoded(events), "10.0.0.9")
    (seg,) = chunk.segments
    assert (seg.host, seg.source, seg.count) == ("web1", "/a.log", 5)
    assert seg.time == 1700000000.25 and seg.lines() == [f"line {n}" for n in range(5)]
    assert chunk == general(decoded(events))


def test_lean_records_take_a_segment_per_source_run() -> None:
    message = lean([("/a.log", ["a1", "a2"]), ("/b.log", ["b1"]), ("/a.log", ["a3"])])
    chunk = message_to_chunk(message, "10.0.0.9")
    assert [(s.host, s.source, s.time, s.lines()) for s in chunk.segments] == [
        ("web1", "/a.log", 1_700_000_000, ["a1", "a2"]), ("web1", "/b.log", 1_700_000_001, ["b1"]),
        ("web1", "/a.log", 1_700_000_002, ["a3"])]
    assert chunk == general(message)


def test_lean_records_without_a_host_option_take_the_peer_address() -> None:
    message = lean([("/a.log", ["x", "caf\u00e9", "multi\nline"])], host=None)
    chunk = message_to_chunk(message, "10.0.0.9")  # not plain ASCII: the general path
    assert [(s.host, s.source, s.count) for s in chunk.segments] == [
        ("10.0.0.9", "/a.log", 2), ("10.0.0.9", "/a.log", 1)]
    assert chunk.lines() == ["x", "caf\u00e9", "multi\nline"]


def test_other_shapes_fall_back_to_the_general_path() -> None:
    events = [(1.0, {"log": "fluent bit line\n"}), (2.0, {"message": "x", "host": "h2"}),
              (3.0, {"message": "multi\nline", "host": "h2", "source": "s"}),
              (4.0, {"message": "caf\u00e9", "host": "h2", "source": "s"}),
              (5.0, {"message": "crlf\r", "host": "h2", "source": "s"}),
              (6.0, {"user": "bob", "n": 1})]
    chunk = message_to_chunk(decoded(events), "10.0.0.9")
    assert chunk.lines() == ["fluent bit line", "x", "multi\nline", "caf\u00e9", "crlf",
                             '{"user":"bob","n":1}']
    assert [(s.host, s.source) for s in chunk.segments] == [
        ("10.0.0.9", "app"), ("h2", "app"), ("h2", "s"), ("h2", "s"), ("10.0.0.9", "app")]
    assert chunk.segments[2].multiline


def test_records_with_keys_json_cannot_hold_become_text() -> None:
    events = [(1.0, {b"raw": "v", "nested": {(1, 2): b"x"}}), (2.0, {None: 1, 3: [b"k"]})]
    chunk = message_to_chunk(decoded(events), "10.0.0.9")
    assert chunk.lines() == ['{"raw":"v","nested":{"(1, 2)":"b\'x\'"}}',
                             '{"null":1,"3":["b\'k\'"]}']


def test_long_lines_are_cut_and_counted_on_both_paths() -> None:
    events = [(1.0, {"message": "a" * 100, "host": "h", "source": "s"}),
              (1.0, {"message": "ok", "host": "h", "source": "s"})]
    fast = message_to_chunk(decoded(events), "p", max_line_bytes=40)
    assert fast.truncated == 1 and fast.lines() == ["a" * 40 + TRUNCATED_MARKER, "ok"]
    assert fast == general(decoded(events), max_line_bytes=40)


def test_an_event_time_inside_a_record_becomes_a_unix_time() -> None:
    record = {"when": msgpack.ExtType(0, b"\x00\x00\x00\x01\x00\x00\x00\x00")}
    (line,) = message_to_chunk(decoded([(1.0, record)]), "p").lines()
    assert line == '{"when":1.0}'


LINE = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h1", "h2", "caf\u00e9"]), st.sampled_from(["s1", "s2"]),
                          LINE), min_size=1, max_size=20))
def test_fast_path_equals_general_path(rows: list[tuple[str, str, str]]) -> None:
    events = [(1.5 + n, {"message": line, "host": host, "source": source})
              for n, (host, source, line) in enumerate(rows)]
    message = decoded(events)
    assert message_to_chunk(message, "10.0.0.9", 64) == general(message, 64)


AGENT_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["/a", "/b", "caf\u00e9"]),
                          st.lists(AGENT_LINE, min_size=1, max_size=5)), min_size=1, max_size=6))
def test_lean_fast_path_equals_general_path(runs: list[tuple[str, list[str]]]) -> None:
    message = lean(runs)
    chunk = message_to_chunk(message, "10.0.0.9", 64)
    assert chunk == general(message, 64)
    assert chunk.lines() == [truncate(line, 64) or line for _, lines in runs for line in lines]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["/a", "/b", "caf\u00e9"]),
                          st.lists(AGENT_LINE, min_size=1, max_size=5)), min_size=1, max_size=6))
def test_block_events_give_what_lean_records_give(runs: list[tuple[str, list[str]]]) -> None:
    for limit in (0, 64):
        assert message_to_chunk(agent(runs), "10.0.0.9", limit) == message_to_chunk(
            lean(runs), "10.0.0.9", limit)


def test_block_events_cut_long_lines_where_the_windows_find_them() -> None:
    runs = [("/a", ["short", "x" * 5000, "y" * 100]), ("/a", ["z" * 2100]), ("/b", ["w" * 2000])]
    chunk = message_to_chunk(agent(runs), "p", max_line_bytes=2048)
    assert chunk == message_to_chunk(lean(runs), "p", max_line_bytes=2048)
    assert chunk.truncated == 2
    assert [len(line) for line in chunk.lines()] == [5, 2048 + len(TRUNCATED_MARKER), 100,
                                                     2048 + len(TRUNCATED_MARKER), 2000]
    assert [(s.source, s.count) for s in chunk.segments] == [("/a", 4), ("/b", 1)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=40),
       st.sampled_from([2048, 4096, 10_000]))
def test_the_long_line_windows_never_miss_one(lengths: list[int], limit: int) -> None:
    text = "\n".join("\u00e9" * n if n % 3 == 0 else "a" * n for n in lengths)
    needs_cut = any(truncate(line, limit) is not None for line in text.split("\n"))
    assert not needs_cut or _may_hold_long_line(text, limit)


def test_a_block_event_holding_a_multi_line_record_keeps_it_whole() -> None:
    entries = b"".join(msgpack.packb([ts, {"message": text}])
                       for ts, text in [(1, "a\nb"), (2, "one\ntrace")])
    frame = msgpack.packb(["app", entries, {"size": 2, "lines": [2, 1], "sources": [["/s", 2]]}])
    (message,) = forward.FrameDecoder(LIMIT).feed(frame)
    chunk = message_to_chunk(message, "10.0.0.9")
    assert [(s.source, s.count, s.text) for s in chunk.segments] == [
        ("/s", 2, "a\nb"), ("/s", 1, "one\ntrace")]
    assert chunk.segments[1].multiline and chunk.lines() == ["a", "b", "one\ntrace"]


def test_a_multi_line_record_in_a_block_frame_is_cut_as_one_line() -> None:
    """Its newlines must not hide its length from ``MAX_LINE_BYTES`` (nor a trailing one
    make it differ from the same record sent without the ``lines`` option)."""
    big = ("x" * 100 + "\n") * 100
    entries = b"".join(msgpack.packb([1, {"message": text}]) for text in (big, "ok\r\n"))
    frame = msgpack.packb(["app", entries, {"size": 2, "chunk": "c1", "lines": [1, 1]}])
    (message,) = forward.FrameDecoder(LIMIT).feed(frame)
    chunk = message_to_chunk(message, "10.0.0.9", max_line_bytes=2048)
    assert chunk.truncated == 1
    assert chunk == general(message, max_line_bytes=2048)
    assert chunk.lines() == [big[:2048] + TRUNCATED_MARKER, "ok"]

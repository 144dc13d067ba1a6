"""The Forward v1 codec, bytes in and out, no sockets: every mode, limits and bad input."""

from __future__ import annotations

import gzip
import struct

import msgpack
import pytest

from logsig import forward
from logsig.errors import FrameTooLarge, ProtocolError

LIMIT = 1 << 20


def decode_all(data: bytes, step: int | None = None) -> list[forward.ForwardMessage]:
    decoder = forward.FrameDecoder(LIMIT)
    step = step or len(data)
    out: list[forward.ForwardMessage] = []
    for i in range(0, len(data), step):
        out += decoder.feed(data[i : i + step])
    assert decoder.pending_bytes == 0
    return out


def entries(n: int) -> bytes:
    return b"".join(forward.pack_event(1700000000.25 + i, {"message": f"line {i}"})
                    for i in range(n))


def test_event_time_round_trips_with_nanoseconds() -> None:
    ext = forward.event_time(1700000000.123456789)
    assert ext.code == 0 and len(ext.data) == 8
    seconds, nanos = struct.unpack(">II", ext.data)
    assert seconds == 1700000000 and abs(nanos - 123456789) < 1000


def test_message_mode() -> None:
    [msg] = decode_all(forward.encode_message("app.web", 1.5, {"log": "hello"}, chunk="c1"))
    assert (msg.tag, msg.mode, msg.chunk) == ("app.web", "message", "c1")
    assert msg.events == [(1.5, {"log": "hello"})]


def test_message_mode_with_integer_time_and_no_option() -> None:
    [msg] = decode_all(msgpack.packb(["t", 1700000000, {"a": 1}]))
    assert msg.events == [(1700000000.0, {"a": 1})] and msg.chunk is None


def test_forward_mode() -> None:
    [msg] = decode_all(forward.encode_forward("t", [(1.0, {"m": "a"}), (2.0, {"m": "b"})], "c"))
    assert msg.mode == "forward" and msg.chunk == "c"
    assert [r["m"] for _, r in msg.events] == ["a", "b"]


@pytest.mark.parametrize("compress", [False, True])
def test_packed_forward_modes(compress: bool) -> None:
    data = forward.encode_packed_forward("t", entries(50), 50, "chunk-9", compress=compress)
    [msg] = decode_all(data, step=13)  # arrives in small pieces
    assert msg.mode == ("compressed" if compress else "packed")
    assert [r["message"] for _, r in msg.events] == [f"line {i}" for i in range(50)]
    assert msg.events[3][0] == pytest.approx(1700000003.25)


def test_packed_forward_as_legacy_str_payload() -> None:
    # msgpack before the bin type (old fluentd) sends the entries as a raw/str value.
    legacy = msgpack.packb(["t", entries(4), {"size": 4}], use_bin_type=False)
    [msg] = decode_all(legacy)
    assert [r["message"] for _, r in msg.events] == [f"line {i}" for i in range(4)]


def test_concatenated_gzip_members() -> None:
    raw = entries(4)
    two_members = gzip.compress(raw[:40]) + gzip.compress(raw[40:])
    [msg] = decode_all(msgpack.packb(["t", two_members, {"compressed": "gzip", "size": 4}]))
    assert len(msg.events) == 4


def test_many_frames_in_one_read() -> None:
    data = b"".join(forward.encode_message("t", i, {"n": i}) for i in range(100))
    assert [m.events[0][1]["n"] for m in decode_all(data)] == list(range(100))


def test_a_nil_heartbeat_between_frames_is_ignored() -> None:
    data = msgpack.packb(None) + forward.encode_message("t", 1, {"n": 1}) + msgpack.packb(None)
    assert [m.events[0][1]["n"] for m in decode_all(data)] == [1]


def test_requests_before_a_bad_one_travel_with_the_error() -> None:
    good = b"".join(forward.encode_message("t", i, {"n": i}) for i in range(2))
    for bad, reason in ((msgpack.packb([42, 1, {}]), "tag must be a string"),
                        (b"\xc1", "malformed msgpack")):
        with pytest.raises(ProtocolError, match=reason) as info:
            forward.FrameDecoder(LIMIT).feed(good + bad)
        assert [m.events[0][1]["n"] for m in info.value.decoded] == [0, 1]


def test_truncated_frame_waits_for_more() -> None:
    data = forward.encode_packed_forward("t", entries(3), 3, "c")
    decoder = forward.FrameDecoder(LIMIT)
    assert decoder.feed(data[:-1]) == []
    assert decoder.pending_bytes == len(data) - 1
    [msg] = decoder.feed(data[-1:])
    assert len(msg.events) == 3


def test_ack_encoding() -> None:
    assert msgpack.unpackb(forward.encode_ack("abc")) == {"ack": "abc"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([1, 2, {}], "tag must be a string"),
        ("just a string", "request must be an array"),
        (["t"], "request must be an array"),
        (["t", 1, "not a map"], "record must be a map"),
        (["t", "x", {}, {}, {}], "request must be an array"),
        (["t", [[1]]], "event must be a [time, record] pair"),
        (["t", [["noon", {}]]], "event time must be"),
        (["t", 1.0, {}, "opt"], "option must be a map"),
        (["t", [], {"chunk": 5}], "'chunk' must be a string"),
        (["t", [], {"size": -1}], "'size' must be"),
        (["t", b"", {"compressed": "zstd"}], "unsupported compression"),
        (["t", [[1, {}]], {"size": 2}], "option size=2 but 1 events"),
        (["t", 1], "message mode needs"),
        ([b"\xff\xfe", 1, {}], "tag is not valid UTF-8"),
        (["t", 1, {}, {"chunk": b"\x00\x80"}], "option 'chunk' is not valid UTF-8"),
        (["t", [[1, {}]], {"host": ""}], "option 'host' must be a non-empty string"),
        (["t", [[1, {}]], {"host": 7}], "option 'host' must be a non-empty string"),
        (["t", [[1, {}]], {"sources": "s"}], "option 'sources' must be an array"),
        (["t", [[1, {}]], {"sources": [["s", 0], ["s", 1]]}], "option 'sources' must hold"),
        (["t", [[1, {}]], {"sources": [["", 1]]}], "option 'sources' must hold"),
        (["t", [[1, {}]], {"sources": [["s", True]]}], "option 'sources' must hold"),
        (["t", [[1, {}]], {"sources": [["s", 2]]}], "'sources' covers 2 events but 1 arrived"),
        (["t", [[1, {"message": "a"}]], {"lines": 1}], "option 'lines' must hold one line count"),
        (["t", [[1, {"message": "a"}]], {"lines": [1, 1]}], "option 'lines' must hold one"),
        (["t", [[1, {"message": "a"}]], {"lines": [0]}], "option 'lines' must hold one"),
        (["t", [[1, {"message": "a"}]], {"lines": [True]}], "option 'lines' must hold one"),
        (["t", [[1, {"log": "a"}]], {"lines": [1]}], "event 0 is not"),
        (["t", [[1, {"message": "a", "host": "h"}]], {"lines": [1]}], "event 0 is not"),
        (["t", [[1, {"message": 5}]], {"lines": [1]}], "event 0 is not"),
        (["t", [[1, {"message": "a"}], [1, {"message": "a\nb"}]], {"lines": [1, 3]}],
         "option 'lines' gives event 1 3 lines, its message holds 2"),
    ],
)
def test_wrong_shapes_are_protocol_errors(value: object, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode_all(msgpack.packb(value, use_bin_type=False))


def test_garbage_bytes() -> None:
    with pytest.raises(ProtocolError, match="malformed msgpack"):
        forward.FrameDecoder(LIMIT).feed(b"\xc1\xc1\xc1")


def test_corrupt_packed_entries() -> None:
    good = entries(2)
    with pytest.raises(ProtocolError, match="incomplete event"):
        decode_all(msgpack.packb(["t", good[:-3], {}]))
    with pytest.raises(ProtocolError, match=r"bad gzip|truncated gzip"):
        decode_all(msgpack.packb(["t", b"\x1f\x8b\x08garbage", {"compressed": "gzip"}]))
    with pytest.raises(ProtocolError, match="truncated gzip"):
        decode_all(msgpack.packb(["t", gzip.compress(good)[:-8], {"compressed": "gzip"}]))


def test_unknown_ext_type() -> None:
    with pytest.raises(ProtocolError, match="ext type 5"):
        decode_all(msgpack.packb(["t", msgpack.ExtType(5, b"12345678"), {}]))


def test_oversized_frame_is_refused_before_it_completes() -> None:
    decoder = forward.FrameDecoder(64 * 1024)
    big = msgpack.packb(["t", 1, {"log": "x" * (1 << 20)}])
    with pytest.raises(FrameTooLarge):
        for i in range(0, len(big), forward.READ_SIZE):
            decoder.feed(big[i : i + forward.READ_SIZE])


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"\x00" * (4 * LIMIT))
    with pytest.raises(FrameTooLarge, match="decompressed"):
        decode_all(msgpack.packb(["t", bomb, {"compressed": "gzip"}]))


def test_deep_nesting_is_a_protocol_error() -> None:
    deep = b"\x91" * 5000 + b"\xc0"
    with pytest.raises(ProtocolError):
        forward.FrameDecoder(LIMIT).feed(deep)


@pytest.mark.parametrize("sizes", [[0], [3], [200, 100], [70_000], [40_000, 40_000, 1]])
@pytest.mark.parametrize("compress", [False, True])
def test_packed_forward_in_pieces_is_the_packers_frame(sizes: list[int], compress: bool) -> None:
    """Entries handed over in pieces (the agent's blocks) give the frame msgpack itself
    packs around them joined: the same bytes, every bin header size included."""
    pieces = [bytes([65 + n]) * size for n, size in enumerate(sizes)]
    joined = b"".join(pieces)
    frame = forward.encode_packed_forward("t", pieces, 2, "c", compress=compress,
                                          extra={"host": "h"})
    assert frame == forward.encode_packed_forward("t", joined, 2, "c", compress=compress,
                                                  extra={"host": "h"})
    if not compress:
        assert frame == msgpack.packb(["t", joined, {"host": "h", "size": 2, "chunk": "c"}],
                                      use_bin_type=True)

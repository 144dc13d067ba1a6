"""The analysis wire contract without a socket: frames, requests, replies, task arguments."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from logsig.errors import ProtocolError
from logsig.jobwire import (
    BAD_REQUEST,
    MAX_CHUNKS,
    AnalysisError,
    ChunkResult,
    ChunkTask,
    Reply,
    Request,
    decode_note,
    encode_frame,
    encode_note,
    read_frame,
)


def frames_from(data: bytes, max_bytes: int = 1024) -> dict[str, object]:
    async def go() -> dict[str, object]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader, max_bytes)

    return asyncio.run(go())


def test_a_request_survives_its_frame() -> None:
    req = Request("chat", 1234, 7, "export.txt", 2023)
    assert Request.decode(frames_from(encode_frame(req.encode()))) == req


@pytest.mark.parametrize("change", [
    {"profile": "pdf"}, {"size": -1}, {"chunks": MAX_CHUNKS + 1}, {"v": 2}, {"type": "ping"},
    {"size": "big"}, {"year": 0},
])
def test_bad_requests_are_refused_with_bad_request(change: dict[str, object]) -> None:
    obj = {**Request("logs", 10).encode(), **change}
    with pytest.raises(AnalysisError) as info:
        Request.decode(obj)
    assert info.value.code == BAD_REQUEST


def test_a_request_without_a_profile_is_refused() -> None:
    obj = Request("logs", 10).encode()
    del obj["profile"]
    with pytest.raises(AnalysisError, match="malformed request"):
        Request.decode(obj)


def test_oversized_and_malformed_frames_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        frames_from(struct.pack(">I", 5000) + b"x" * 5000)
    with pytest.raises(ProtocolError, match="expected a map"):
        frames_from(encode_frame([1, 2]))  # type: ignore[arg-type]
    body = b"\xc1"  # a byte msgpack never uses
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        frames_from(struct.pack(">I", len(body)) + body)
    with pytest.raises(asyncio.IncompleteReadError):
        frames_from(encode_frame({"a": 1})[:-1])


def test_replies_round_trip_and_drop_empty_fields() -> None:
    for reply in (Reply("accepted", job="j", total=4), Reply("progress", job="j", done=2,
                                                             total=4),
                  Reply("report", job="j", report={"lines": 3}),
                  Reply.failure("timeout", "2 of 4 chunks")):
        wire = reply.encode()
        assert "" not in wire.values() and None not in wire.values()
        assert Reply.decode(msgpack.unpackb(msgpack.packb(wire))) == reply
    with pytest.raises(ProtocolError):
        Reply.decode({"kind": "gossip"})


def test_task_and_result_round_trip() -> None:
    task = ChunkTask("job1", 3, "logs", "p:analysis:job1:3", "p:analysis-results:job1",
                     "p:analysis-inbox:g", 2024, 660)
    assert ChunkTask.decode(msgpack.unpackb(msgpack.packb(task.encode()))) == task
    with pytest.raises(ProtocolError):
        ChunkTask.decode([9, "job"])
    ok = ChunkResult.success("job1", 3, {"profile": "logs", "stats": {"lines": 1}})
    failed = ChunkResult("job1", 2, error="boom")
    assert ChunkResult.decode(ok.encode()) == ok
    assert ok.partial() == {"profile": "logs", "stats": {"lines": 1}}
    assert ChunkResult.decode(failed.encode()) == failed
    with pytest.raises(ProtocolError):
        ChunkResult.decode(b"\x93\x01\x02\x03")
    assert decode_note(encode_note("job1", 5)) == ("job1", 5)
    with pytest.raises(ProtocolError):
        decode_note(b"\x91\x01")


def test_the_analysis_package_is_in_the_distribution() -> None:
    """pyproject lists packages explicitly, so a new subpackage must be listed to reach the
    images (``pip install .``); without it the worker and gateway images fail at import."""
    import tomllib

    from tests.conftest import ROOT

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "workers.analysis" in listed["packages"], \
        "add 'workers.analysis' to [tool.setuptools] packages in pyproject.toml"

"""The stdin source on a redirected file and on a pipe: lines to EOF, stop mid-read."""

from __future__ import annotations

import os
from pathlib import Path

from agents.stdin import StdinSource
from tests.agent_support import run_source


def test_regular_file_is_read_to_eof_with_its_last_line(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\r\nb\nc")
    with open(path, "rb") as fh:
        blocks = run_source(StdinSource(fh.fileno()))
    assert [x for b in blocks for x in b.lines] == ["a", "b", "c"]
    assert all(b.source == "stdin" and b.ends is None and b.key is None for b in blocks)


def test_pipe_is_read_to_eof() -> None:
    r, w = os.pipe()
    os.write(w, b"".join(b"line %d\n" % i for i in range(3000)) + b"last")
    os.close(w)
    try:
        blocks = run_source(StdinSource(r))
        assert os.get_blocking(r)  # handed back as it was found
    finally:
        os.close(r)
    assert [x for b in blocks for x in b.lines] == [f"line {i}" for i in range(3000)] + ["last"]


def test_stop_interrupts_a_read_that_would_never_return() -> None:
    r, w = os.pipe()
    os.write(w, b"one\ntwo")
    try:
        blocks = run_source(StdinSource(r), stop_after=0.2)  # the writer never closes
    finally:
        os.close(w)
        os.close(r)
    assert [x for b in blocks for x in b.lines] == ["one", "two"]

"""``logsig analyze FILE``: have the workers analyze a whole file; print one report.

The file goes to the gateway's analysis port (``ANALYZE_PORT``, protocol in
:mod:`logsig.jobwire`) with ``sendfile``; a progress bar on stderr (plain lines when stderr
is not a terminal) follows the chunks as workers finish them; the consolidated report is
printed as text, or as JSON with ``--json``. The client is plain blocking sockets: it has
one conversation and nothing to run beside it.

Exit codes: 0 report printed, 1 the job failed (the gateway's reason is printed: refused,
timed out, a chunk failed...) or the gateway is unreachable, 2 the file cannot be read.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from logsig.jobwire import MAX_REPLY_BYTES, AnalysisError, Reply, Request, decode_body, encode_frame
from logsig.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CONNECT_TIMEOUT_S = 10.0
BAR_WIDTH = 30

Progress = Callable[[Reply], None]


def submit(settings: Settings, path: str, profile: str, chunks: int = 0,
           year: int | None = None, on_reply: Progress | None = None) -> dict[str, Any]:
    """Upload ``path`` and return the report; raise :class:`AnalysisError` if the job fails."""
    size = os.path.getsize(path)
    if year is None:
        year = time.localtime(os.path.getmtime(path)).tm_year
    request = Request(profile, size, chunks, os.path.basename(path), year)
    address = (settings.gateway_host, settings.analyze_port)
    with socket.create_connection(address, timeout=CONNECT_TIMEOUT_S) as sock:
        sock.settimeout(settings.read_timeout)
        sock.sendall(encode_frame(request.encode()))
        first = _expect(sock, on_reply)
        if first.kind != "accepted":
            raise AnalysisError("bad_reply", f"expected 'accepted', got {first.kind!r}")
        with open(path, "rb") as fh:
            sock.sendfile(fh, count=size)
        sock.settimeout(settings.analyze_timeout + settings.read_timeout)
        while True:
            reply = _expect(sock, on_reply)
            if reply.kind == "report" and reply.report is not None:
                return reply.report


def _expect(sock: socket.socket, on_reply: Progress | None) -> Reply:
    """The next reply; an ``error`` reply becomes an :class:`AnalysisError`."""
    reply = Reply.decode(decode_body(_read_frame(sock)))
    if reply.kind == "error":
        raise AnalysisError(reply.code, reply.message)
    if on_reply is not None:
        on_reply(reply)
    return reply


def _read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">I", _recv_exactly(sock, 4))
    if length > MAX_REPLY_BYTES:
        raise AnalysisError("bad_reply", f"reply of {length} bytes is too large")
    return _recv_exactly(sock, length)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(min(n - len(buf), 1 << 20))
        if not data:
            raise AnalysisError("connection_lost", "the gateway closed the connection")
        buf += data
    return bytes(buf)


class ProgressBar:
    """A one-line bar on a terminal; one line per step otherwise (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()

    def __call__(self, reply: Reply) -> None:
        if reply.kind == "accepted":
            self._say(f"analyze: uploading (job {reply.job[:8]})")
        elif reply.kind == "dispatched":
            self._bar(0, reply.total)
        elif reply.kind == "progress":
            self._bar(reply.done, reply.total)

    def _bar(self, done: int, total: int) -> None:
        if not self._tty:
            self._say(f"analyze: {done}/{total} chunks done")
            return
        filled = BAR_WIDTH * done // max(total, 1)
        self._stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} "
                           "chunks")
        if done == total:
            self._stream.write("\n")
        self._stream.flush()

    def _say(self, text: str) -> None:
        if not self._tty:
            print(text, file=self._stream, flush=True)


def run(settings: Settings, path: str, profile: str, chunks: int = 0, as_json: bool = False,
        year: int | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The ``analyze`` command: the report on ``out``, progress and errors on ``err``."""
    from workers.analysis.text import render

    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        print(f"logsig analyze: cannot read {path!r}", file=err)
        return EXIT_USAGE
    try:
        report = submit(settings, path, profile, chunks, year, ProgressBar(err))
    except AnalysisError as exc:
        print(f"logsig analyze: job failed ({exc.code}): {exc.message}", file=err)
        return EXIT_FAILED
    except TimeoutError:
        print("logsig analyze: the gateway did not answer in time", file=err)
        return EXIT_FAILED
    except OSError as exc:
        print(f"logsig analyze: cannot reach the gateway at {settings.gateway_host}:"
              f"{settings.analyze_port}: {exc}", file=err)
        return EXIT_FAILED
    out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n" if as_json
              else render(report))
    return EXIT_OK

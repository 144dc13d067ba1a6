"""Rebuilding a pending chunk from its intent: the same lines, from the same bytes.

A segment is re-read from its file (found by identity, even renamed) and split exactly as
the tailer split it: newlines and CRLF, the swallowed late newline after a cut line, a last
line shipped unterminated (``cut``). Its fingerprint must match the one taken when it was
first sent (in this encoding, or in one that earlier agents used). What cannot
be rebuilt (file deleted, truncated, rewritten) is logged with the chunk id, the file and
the number of lines lost; the rest still goes out under the id.

A read that fails for any other reason (out of descriptors, an I/O error, a permission
taken away) loses nothing: the whole chunk is :class:`ReplayDeferred` and stays pending,
since a chunk id is recorded once and a part sent now would shut out the rest for good.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from agents.block import Block, LineBuffer, plain_ends
from agents.encoder import FrameEncoder
from agents.identity import GONE, find_file, identity
from agents.intent import Intent, Segment, fingerprint
from logsig.errors import LogsigError

log = logging.getLogger(__name__)


class SegmentLost(LogsigError):
    """A segment's lines can no longer be read back as they were sent (reason as text)."""


class ReplayDeferred(LogsigError):
    """A segment's file is there but cannot be read now: try the whole chunk again later."""


def rebuild(intent: Intent, encoder: FrameEncoder) -> tuple[Intent, list[Block], list[bytes]]:
    """What of ``intent`` can still be sent: the intent trimmed to it, blocks and entries.

    Raises :class:`ReplayDeferred` if a segment's file cannot be read for now.
    """
    kept: list[Segment] = []
    blocks: list[Block] = []
    entries: list[bytes] = []
    for seg in intent.segments:
        try:
            block = read_segment(seg)
            packed = encoder.entries(block)
            if fingerprint(packed) != seg.check and all(
                    fingerprint(earlier) != seg.check
                    for earlier in encoder.earlier_entries(block)):
                raise SegmentLost("its bytes changed since it was sent")
        except (SegmentLost, *GONE) as exc:
            log.warning("chunk %s: %d line(s) of %s (bytes %d-%d) can no longer be replayed: %s",
                        intent.chunk, seg.lines, seg.path, seg.start, seg.end, exc)
            continue
        except OSError as exc:
            raise ReplayDeferred(f"{seg.path} (bytes {seg.start}-{seg.end}): {exc}") from exc
        kept.append(seg)
        blocks.append(block)
        entries.append(packed)
    return Intent(intent.chunk, tuple(kept)), blocks, entries


def read_segment(seg: Segment) -> Block:
    """The segment's block, read back from its file; :class:`SegmentLost` if impossible."""
    path = find_file(seg.path, seg.key)
    if path is None:
        raise SegmentLost("the file is gone")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if identity(st) != seg.key:
            raise SegmentLost("the file was replaced")
        if st.st_size < seg.end:
            raise SegmentLost(f"the file was truncated to {st.st_size} bytes")
        data = os.pread(fd, seg.end - seg.start, seg.start)
        after_cut = seg.start > 0 and os.pread(fd, 1, seg.start - 1) != b"\n"
    finally:
        os.close(fd)
    lines, ends = split_segment(data, seg.start, after_cut=after_cut, cut=seg.cut)
    block = Block(seg.path, seg.time, lines, ends, seg.key, seg.start, seg.cut)
    if len(lines) != seg.lines or not lines or block.end != seg.end:
        raise SegmentLost(f"it now splits into {len(lines)} line(s), not {seg.lines}")
    return block


def split_segment(data: bytes, start: int, *, after_cut: bool,
                  cut: bool) -> tuple[Sequence[str], list[int] | None]:
    """Lines and end offsets of ``data`` (read at ``start``), split as the tailer did (None
    for the offsets of plain lines, as :meth:`LineBuffer.feed` gives them)."""
    buffer = LineBuffer(start, after_cut=after_cut)
    lines, ends = buffer.feed(data)
    if cut:
        last, last_end = buffer.take()
        if ends is None:
            ends = plain_ends(lines, start)
        lines, ends = [*lines, *last], ends + last_end
    return lines, ends

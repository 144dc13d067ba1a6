"""Turns a batch of blocks into one Forward PackedForward frame.

Each block (lines read together from one source) is one event, ``[seconds, {"message":
text}]``, its lines joined by ``"\n"``; the ``lines`` option gives each event's line count,
and the agent's host and the blocks' sources travel once per frame in the ``host`` and
``sources`` options (:mod:`logsig.forward`). The gateway then takes each text as a batch
segment as it is, instead of decoding an object per line and joining them again, and
neither side packs or unpacks anything per line. The time is whole seconds rather than an
EventTime, which the gateway could only decode with a Python call per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from agents.block import Block, JoinedLines
from logsig.forward import encode_packed_forward, event_time, str_header
from logsig.newlines import count_newlines


class FrameEncoder:
    """Encodes one agent's blocks under one tag."""

    def __init__(self, tag: str, host: str) -> None:
        self.tag = tag
        self.host = host
        self._packer = msgpack.Packer(use_bin_type=True)

    def entries(self, block: Block) -> bytes:
        """The block as one ``[seconds, {"message": text}]`` event (nothing if it is empty).

        Lines never hold a newline (every source splits on it); one that did would make the
        count a lie the gateway refuses, so it is refused here, where the bug is. A block
        whose reader split it out of a file's bytes (``stop`` known) is not counted again,
        nor are plain lines kept as read (:class:`JoinedLines`): their bytes, less the last
        newline, are the text, packed as msgpack packs a str of that length.
        """
        lines = block.lines
        if not lines:
            return b""
        if isinstance(lines, JoinedLines):
            size = len(lines.data) - 1
            return b"".join((self._event_head(block), str_header(size),
                             memoryview(lines.data)[:size]))
        text = "\n".join(lines)
        if block.stop is None and count_newlines(text) != len(lines) - 1:
            raise ValueError(f"a line of {block.source} holds a newline")
        return self._packer.pack([int(block.time), {"message": text}])

    def _event_head(self, block: Block) -> bytes:
        """``[seconds, {"message":`` of the block's event, packed."""
        p = self._packer
        return (p.pack_array_header(2) + p.pack(int(block.time)) + p.pack_map_header(1)
                + p.pack("message"))

    def earlier_entries(self, block: Block) -> tuple[bytes, bytes]:
        """The block's entries as earlier agents packed them, newest first: replaying a chunk
        such an agent left unacked checks its fingerprint against these."""
        return self.lean_entries(block), self.legacy_entries(block)

    def lean_entries(self, block: Block) -> bytes:
        """A ``[seconds, {"message": line}]`` event per line, as agents before block events
        sent them."""
        if not block.lines:
            return b""
        head = self._event_head(block)
        return head + head.join(map(self._packer.pack, block.lines))

    def legacy_entries(self, block: Block) -> bytes:
        """The entries as agents before the lean records packed them (EventTime, message,
        source, host per line)."""
        p = self._packer
        head = (p.pack_array_header(2) + p.pack(event_time(block.time)) + p.pack_map_header(3)
                + p.pack("message"))
        tail = p.pack("source") + p.pack(block.source) + p.pack("host") + p.pack(self.host)
        return tail.join([head + p.pack(line) for line in block.lines]) + tail

    def encode(self, blocks: Sequence[Block], chunk: str) -> bytes:
        """One PackedForward frame carrying every line of ``blocks``, asking for an ack."""
        return self.frame(blocks, [self.entries(b) for b in blocks], chunk)

    def frame(self, blocks: Sequence[Block], entries: Sequence[bytes], chunk: str) -> bytes:
        """The frame for ``blocks`` whose entries (:meth:`entries`) are already packed."""
        full = [b for b in blocks if b.lines]
        sources: list[list[Any]] = []
        for block in full:
            if sources and sources[-1][0] == block.source:
                sources[-1][1] += 1
            else:
                sources.append([block.source, 1])
        return encode_packed_forward(
            self.tag, entries, len(full), chunk,
            extra={"host": self.host, "sources": sources, "lines": [len(b) for b in full]})

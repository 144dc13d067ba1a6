"""Turns a batch of blocks into one Forward PackedForward frame.

Byte-for-byte the entries :func:`logsig.forward.pack_event` would make, but the parts
shared by a block (EventTime, map header, keys, source, host) are packed once per block
with one reusable Packer; only the line itself is packed per line.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from agents.block import Block
from logsig.forward import encode_packed_forward, event_time


class FrameEncoder:
    """Encodes ``{"message", "source", "host"}`` records for one agent and tag."""

    def __init__(self, tag: str, host: str) -> None:
        self.tag = tag
        self._packer = msgpack.Packer(use_bin_type=True)
        self._host = self._packer.pack("host") + self._packer.pack(host)

    def entries(self, block: Block) -> bytes:
        """The block's lines as concatenated ``[EventTime, record]`` entries."""
        p = self._packer
        head = (p.pack_array_header(2) + p.pack(event_time(block.time)) + p.pack_map_header(3)
                + p.pack("message"))
        tail = p.pack("source") + p.pack(block.source) + self._host
        pack = p.pack
        return tail.join([head + pack(line) for line in block.lines]) + tail

    def encode(self, blocks: Sequence[Block], chunk: str) -> bytes:
        """One PackedForward frame carrying every line of ``blocks``, asking for an ack."""
        return self.frame([self.entries(b) for b in blocks if b.lines],
                          sum(len(b.lines) for b in blocks), chunk)

    def frame(self, entries: Sequence[bytes], size: int, chunk: str) -> bytes:
        """The frame for already packed entries (:meth:`entries`) holding ``size`` lines."""
        return encode_packed_forward(self.tag, b"".join(entries), size, chunk)

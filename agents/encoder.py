"""Turns a batch of blocks into one Forward PackedForward frame.

Each line is a lean record, ``[seconds, {"message": line}]``: the agent's host and each
block's source travel once per frame, in the ``host`` and ``sources`` options
(:mod:`logsig.forward`), and the time is whole seconds rather than an EventTime, which the
gateway could only decode with a Python call per line. The part shared by a block's
records (array and map headers, time, key) is packed once; only the line is packed per line.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from agents.block import Block
from logsig.forward import encode_packed_forward, event_time


class FrameEncoder:
    """Encodes one agent's blocks under one tag."""

    def __init__(self, tag: str, host: str) -> None:
        self.tag = tag
        self.host = host
        self._packer = msgpack.Packer(use_bin_type=True)

    def entries(self, block: Block) -> bytes:
        """The block's lines as concatenated ``[seconds, {"message": line}]`` entries."""
        if not block.lines:
            return b""
        p = self._packer
        head = (p.pack_array_header(2) + p.pack(int(block.time)) + p.pack_map_header(1)
                + p.pack("message"))
        return head + head.join(map(p.pack, block.lines))

    def legacy_entries(self, block: Block) -> bytes:
        """The entries as agents before the lean records packed them (EventTime, message,
        source, host per line): replaying a chunk such an agent left unacked checks its
        fingerprint against these."""
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
        sources = [[b.source, len(b.lines)] for b in blocks if b.lines]
        size = sum(count for _, count in sources)
        return encode_packed_forward(self.tag, b"".join(entries), size, chunk,
                                     extra={"host": self.host, "sources": sources})

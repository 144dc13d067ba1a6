"""Acknowledged read positions, persisted so a restarted agent neither skips nor repeats.

Only offsets the gateway has acked are recorded, and only up to the highest contiguous
acked batch (:class:`AckLedger`): a line is never marked done while an earlier one may
still need resending. The file is replaced atomically, so a crash leaves the old or the
new registry, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

from agents.block import Block, FileKey
from logsig.errors import SettingsError

log = logging.getLogger(__name__)

VERSION = 1

Positions = dict[str, tuple[FileKey, int]]
"""File path -> (identity, offset just past the last line covered)."""


def positions_of(blocks: Iterable[Block]) -> Positions:
    """How far into each file a batch reaches (later blocks of a file win)."""
    out: Positions = {}
    for block in blocks:
        if block.key is not None and block.ends:
            out[block.source] = (block.key, block.ends[-1])
    return out


class AckLedger:
    """Hands back acked batches' positions in send order, however the acks arrive."""

    def __init__(self) -> None:
        self._next = 0
        self._floor = 0  # lowest sequence number not yet released
        self._waiting: dict[int, Positions] = {}
        self._acked: set[int] = set()

    def register(self, positions: Positions) -> int:
        """Record a batch about to be sent; returns its sequence number."""
        seq = self._next
        self._next += 1
        self._waiting[seq] = positions
        return seq

    def ack(self, seq: int) -> list[Positions]:
        """Mark ``seq`` acked; return the positions that are now contiguously acked."""
        if seq < self._floor or seq not in self._waiting:
            return []
        self._acked.add(seq)
        released: list[Positions] = []
        while self._floor in self._acked:
            self._acked.discard(self._floor)
            released.append(self._waiting.pop(self._floor))
            self._floor += 1
        return released


class Registry:
    """Path -> (identity, acked offset), loaded at start and saved as acks come in."""

    def __init__(self, path: str, entries: Positions | None = None) -> None:
        self.path = path
        self._entries: Positions = dict(entries or {})
        self.dirty = False

    @classmethod
    def load(cls, path: str) -> Registry:
        """Read ``path``; a missing file is an empty registry, entries of vanished files drop."""
        try:
            with open(path, "rb") as fh:
                doc = json.load(fh)
            if doc.get("version") != VERSION:
                raise ValueError(f"unsupported version {doc.get('version')!r}")
            entries = {p: ((int(e["dev"]), int(e["ino"])), int(e["offset"]))
                       for p, e in doc["files"].items()}
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"REGISTRY_PATH={path!r} is not a readable registry: {exc}"
            raise SettingsError(msg) from exc
        kept = {p: e for p, e in entries.items() if os.path.exists(p)}
        log.info("registry %s: %d file(s) to resume", path, len(kept))
        return cls(path, kept)

    def resume_offset(self, path: str, key: FileKey, size: int) -> int:
        """Where to start reading ``path``: the acked offset if we know this file, else 0.

        The file is known by its identity: under ``path``, or under the name it had before
        a rename while we were away. An offset beyond ``size`` means the file was truncated
        meanwhile, so it is read from the start.
        """
        entry = self._entries.get(path)
        if entry is None or entry[0] != key:
            entry = next((e for e in self._entries.values() if e[0] == key), None)
        if entry is None or entry[1] > size:
            return 0
        return entry[1]

    def commit(self, positions: Positions) -> None:
        """Record acked positions in memory; :meth:`save` makes them durable."""
        if positions:
            self._entries.update(positions)
            self.dirty = True

    def snapshot(self) -> Positions:
        return dict(self._entries)

    def save(self) -> None:
        """Write atomically: temp file, fsync, ``os.replace``, fsync of the directory."""
        doc = {"version": VERSION, "files": {
            p: {"dev": k[0], "ino": k[1], "offset": off} for p, (k, off) in self._entries.items()
        }}
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.dirty = False

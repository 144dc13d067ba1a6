"""What the agent must remember across restarts: read positions and chunks not yet acked.

For each followed file (by identity) the registry keeps the offset up to which every line
is either acknowledged or held by a pending :class:`~agents.intent.Intent`; intents are
added before their chunk is first sent and removed on its ack. So after any crash a
restart resends the intents under their original ids and reads on from the offsets:
nothing is skipped, and nothing acked comes back under a new id.

Every change is also kept as a small operation (``add``, ``put``, ``ack``, ``forget``) for
the append-only log of :mod:`agents.journal`; loading applies the log to the snapshot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from agents import journal
from agents.block import FileKey
from agents.identity import find_file
from agents.intent import Intent
from logsig.errors import SettingsError

log = logging.getLogger(__name__)

VERSION = 2
"""Version 1 (offsets by path, no intents, no log) is still read."""

Files = dict[FileKey, tuple[str, int]]
"""File identity -> (path it was last read as, offset just past what is accounted for)."""


def _may_exist(path: str, key: FileKey) -> bool:
    """Whether to keep a file's position: unless it is surely gone (see ``find_file``)."""
    try:
        return find_file(path, key) is not None
    except OSError:
        return True


class Registry:
    """Offsets and pending intents, loaded at start and saved as chunks go out and come back."""

    def __init__(self, path: str, files: Files | None = None,
                 intents: Sequence[Intent] = ()) -> None:
        self.path = path
        self._files: Files = dict(files or {})
        self._intents: dict[str, Intent] = {i.chunk: i for i in intents}
        self._retired: dict[FileKey, int] = {}
        self.seq = 0
        """Number of the last change; a write that covers it covers everything."""
        self._ops: list[bytes] = []

    @property
    def dirty(self) -> bool:
        """Whether there are changes not handed to :meth:`take_log` or :meth:`snapshot`."""
        return bool(self._ops)

    @classmethod
    def load(cls, path: str) -> Registry:
        """Snapshot plus log; nothing there is an empty registry; vanished files drop."""
        try:
            snapshot, ops = journal.read(path)
            reg = cls(path)
            if snapshot is not None:
                reg.seq = reg._restore(snapshot)
            for op in ops:
                reg._apply(op)
                reg.seq = int(op["seq"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"REGISTRY_PATH={path!r} is not a readable registry: {exc}"
            raise SettingsError(msg) from exc
        reg._files = {k: e for k, e in reg._files.items() if _may_exist(e[0], k)}
        log.info("registry %s: %d file(s) to resume, %d chunk(s) to resend", path,
                 len(reg._files), len(reg._intents))
        return reg

    def resume_offset(self, path: str, key: FileKey, size: int) -> int:
        """Where to start reading the file ``key`` (now at ``path``, ``size`` bytes long).

        0 for a file we do not know; also 0, with a warning, if it shrank below our offset
        while we were away (truncated: what it holds now is new).
        """
        entry = self._files.get(key)
        if entry is None:
            return 0
        if entry[1] > size:
            log.warning("%s shrank to %d bytes below our offset %d while the agent was down; "
                        "reading it from the start", path, size, entry[1])
            return 0
        return entry[1]

    def known(self) -> list[tuple[str, FileKey]]:
        """Every file with a position, as (path last read as, identity)."""
        return [(path, key) for key, (path, _) in self._files.items()]

    def offsets(self) -> Files:
        return dict(self._files)

    def pending(self) -> list[Intent]:
        """Intents not acked yet, oldest first."""
        return list(self._intents.values())

    def add(self, intent: Intent) -> None:
        """Record a chunk about to be sent; its files' offsets move past its lines."""
        self._add(intent)
        self._log({"add": intent.to_json()})
        for key in {seg.key for seg in intent.segments} & self._retired.keys():
            if self._files[key][1] >= self._retired[key]:
                self._forget(key)

    def put(self, intent: Intent) -> None:
        """Keep ``intent`` in place of the pending one of the same chunk (after a replay)."""
        self._intents[intent.chunk] = intent
        self._log({"put": intent.to_json()})

    def ack(self, chunk: str) -> bool:
        """Forget the intent of an acked (or unreplayable) chunk; whether there was one."""
        if self._intents.pop(chunk, None) is None:
            return False
        self._log({"ack": chunk})
        return True

    def retire(self, key: FileKey, offset: int) -> None:
        """A finished file: drop its position once its last line (``offset``) is sent."""
        entry = self._files.get(key)
        if entry is not None and entry[1] >= offset:
            self._forget(key)
        else:
            self._retired[key] = offset

    def take_log(self) -> bytes:
        """The log lines of the changes since the last call (or snapshot)."""
        data, self._ops = b"".join(self._ops), []
        return data

    def snapshot(self) -> bytes:
        """The whole state, which makes the log so far redundant."""
        self._ops = []
        doc = {"version": VERSION, "seq": self.seq,
               "files": [{"path": p, "dev": k[0], "ino": k[1], "offset": off}
                         for k, (p, off) in self._files.items()],
               "intents": [i.to_json() for i in self._intents.values()]}
        return json.dumps(doc, separators=(",", ":")).encode()

    def _add(self, intent: Intent) -> None:
        self._intents[intent.chunk] = intent
        for seg in intent.segments:
            self._files[seg.key] = (seg.path, seg.end)

    def _forget(self, key: FileKey) -> None:
        self._files.pop(key, None)
        self._retired.pop(key, None)
        self._log({"forget": list(key)})

    def _log(self, op: dict[str, Any]) -> None:
        self.seq += 1
        op["seq"] = self.seq
        self._ops.append(json.dumps(op, separators=(",", ":")).encode() + b"\n")

    def _apply(self, op: dict[str, Any]) -> None:
        if "add" in op:
            self._add(Intent.from_json(op["add"]))
        elif "put" in op:
            intent = Intent.from_json(op["put"])
            self._intents[intent.chunk] = intent
        elif "ack" in op:
            self._intents.pop(str(op["ack"]), None)
        elif "forget" in op:
            dev, ino = op["forget"]
            self._files.pop((int(dev), int(ino)), None)
        else:
            raise ValueError(f"unknown registry log entry {op!r:.100}")

    def _restore(self, doc: dict[str, Any]) -> int:
        """Take the snapshot ``doc`` (version 1 or 2); returns its sequence number."""
        version = doc.get("version")
        if version == 1:  # offsets by path, written by agents before intents existed
            self._files = {(int(e["dev"]), int(e["ino"])): (str(p), int(e["offset"]))
                           for p, e in doc["files"].items()}
            return 0
        if version != VERSION:
            raise ValueError(f"unsupported version {version!r}")
        self._files = {(int(e["dev"]), int(e["ino"])): (str(e["path"]), int(e["offset"]))
                       for e in doc["files"]}
        self._intents = {i.chunk: i for i in map(Intent.from_json, doc["intents"])}
        return int(doc["seq"])

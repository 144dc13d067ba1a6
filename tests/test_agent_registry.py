"""The registry: positions and write-ahead intents, atomic writes, resume by identity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.block import Block
from agents.intent import Intent, Segment
from agents.journal import Journal
from agents.registry import Registry
from logsig.errors import SettingsError


def key_of(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def checkpoint(reg: Registry) -> None:
    journal = Journal(reg.path)
    journal.checkpoint(reg.snapshot())
    journal.close()


def append(reg: Registry) -> None:
    journal = Journal(reg.path)
    journal.append(reg.take_log())
    journal.close()


def log_and_registry(tmp_path: Path) -> tuple[Path, Registry]:
    """A 100-byte log file and an empty registry beside it."""
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 100)
    return log, Registry(str(tmp_path / "reg.json"))


def intent(chunk: str, path: Path, start: int, end: int, lines: int = 1) -> Intent:
    return Intent(chunk, (Segment(str(path), key_of(path), start, end, lines, False, 1.5, 7),))


def test_intent_of_blocks_records_each_blocks_range(tmp_path: Path) -> None:
    blocks = [Block("/a", 1.0, ["1", "2"], [2, 4], (1, 1), 0),
              Block("/b", 2.0, ["3"], [9, ], (1, 2), 7, cut=True)]
    got = Intent.of("c1", blocks, [b"x", b"y"])
    assert [(s.path, s.key, s.start, s.end, s.lines, s.cut, s.time) for s in got.segments] == [
        ("/a", (1, 1), 0, 4, 2, False, 1.0), ("/b", (1, 2), 7, 9, 1, True, 2.0)]
    assert got.lines == 3
    assert Intent.from_json(json.loads(json.dumps(got.to_json()))) == got


def test_intents_move_offsets_and_acks_remove_them(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\nc\n")
    reg = Registry(str(tmp_path / "reg.json"))
    reg.add(intent("c1", log, 0, 2))
    reg.add(intent("c2", log, 2, 4))
    assert reg.resume_offset(str(log), key_of(log), 6) == 4  # sent counts, acked or not
    assert [i.chunk for i in reg.pending()] == ["c1", "c2"]
    assert reg.ack("c2") and not reg.ack("c2")  # out of order is fine; twice is a no-op
    assert [i.chunk for i in reg.pending()] == ["c1"]
    assert reg.dirty


def test_checkpoint_is_atomic_and_load_round_trips(tmp_path: Path) -> None:
    log, reg = log_and_registry(tmp_path)
    path = Path(reg.path)
    reg.add(intent("c1", log, 0, 42))
    checkpoint(reg)
    assert not reg.dirty
    # no temp file left behind; the log is there, empty
    assert sorted(os.listdir(tmp_path)) == ["app.log", "reg.json", "reg.json.log"]
    assert (tmp_path / "reg.json.log").read_bytes() == b""
    doc = json.loads(path.read_text())
    assert doc["files"] == [{"path": str(log), "dev": key_of(log)[0], "ino": key_of(log)[1],
                             "offset": 42}]
    loaded = Registry.load(str(path))
    assert loaded.resume_offset(str(log), key_of(log), 100) == 42
    assert loaded.pending() == reg.pending()


def test_the_log_is_applied_on_top_of_the_snapshot_once(tmp_path: Path) -> None:
    log, reg = log_and_registry(tmp_path)
    reg.add(intent("c1", log, 0, 10))
    checkpoint(reg)
    reg.add(intent("c2", log, 10, 20))
    reg.ack("c1")
    append(reg)
    reg.add(intent("c3", log, 20, 30))
    stale_log = reg.take_log()
    loaded = Registry.load(reg.path)
    assert [i.chunk for i in loaded.pending()] == ["c2"]
    assert loaded.resume_offset(str(log), key_of(log), 100) == 20
    # a checkpoint whose log was not emptied yet (killed in between): nothing applied twice
    (tmp_path / "reg.json.log").write_bytes(stale_log[:-7])  # and its last line is torn
    reg.ack("c2")
    Path(reg.path).write_bytes(reg.snapshot())
    loaded = Registry.load(reg.path)
    assert [i.chunk for i in loaded.pending()] == ["c3"]
    assert loaded.resume_offset(str(log), key_of(log), 100) == 30


def test_an_append_after_a_torn_last_line_is_not_lost_with_it(tmp_path: Path) -> None:
    log, reg = log_and_registry(tmp_path)
    reg.add(intent("c1", log, 0, 10))
    append(reg)
    reg.add(intent("torn", log, 10, 20))
    with open(tmp_path / "reg.json.log", "ab") as fh:  # a writer killed mid-append
        fh.write(reg.take_log()[:-9])
    after_restart = Registry.load(reg.path)
    after_restart.add(intent("c2", log, 10, 30))
    append(after_restart)
    loaded = Registry.load(reg.path)
    assert [i.chunk for i in loaded.pending()] == ["c1", "c2"]
    assert loaded.resume_offset(str(log), key_of(log), 100) == 30


def test_version_1_registry_is_still_read(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 10)
    dev, ino = key_of(log)
    path = tmp_path / "reg.json"
    path.write_text(json.dumps({"version": 1, "files": {
        str(log): {"dev": dev, "ino": ino, "offset": 6}}}))
    reg = Registry.load(str(path))
    assert reg.resume_offset(str(log), (dev, ino), 10) == 6 and reg.pending() == []


def test_failed_save_leaves_the_previous_registry_intact(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log, reg = log_and_registry(tmp_path)
    path = Path(reg.path)
    reg.add(intent("c1", log, 0, 10))
    checkpoint(reg)
    before = path.read_bytes()
    reg.add(intent("c2", log, 10, 20))

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)  # the process "dies" before the rename
    with pytest.raises(OSError):
        checkpoint(reg)
    assert path.read_bytes() == before


def test_resume_only_for_the_same_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\nc\n")
    reg = Registry(str(tmp_path / "reg.json"), {key_of(log): (str(log), 4)})
    assert reg.resume_offset(str(log), key_of(log), 6) == 4
    assert reg.resume_offset(str(log), (0, 12345), 6) == 0  # another file now has the name
    assert reg.resume_offset(str(log), key_of(log), 3) == 0  # shrank while we were away
    moved = tmp_path / "app.log.1"
    log.rename(moved)  # renamed while the agent was down: known by identity
    assert reg.resume_offset(str(moved), key_of(moved), 6) == 4


def test_retired_file_is_forgotten_once_its_last_line_is_sent(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\n")
    reg = Registry(str(tmp_path / "reg.json"))
    reg.add(intent("c1", log, 0, 2))
    reg.retire(key_of(log), 4)  # "b" is still on its way to a chunk
    assert reg.known() == [(str(log), key_of(log))]
    reg.add(intent("c2", log, 2, 4))
    assert reg.known() == []
    assert [i.chunk for i in reg.pending()] == ["c1", "c2"]  # intents stay until acked
    append(reg)
    assert Registry.load(reg.path).known() == []


def test_load_drops_vanished_files_and_missing_registry_is_empty(tmp_path: Path) -> None:
    assert Registry.load(str(tmp_path / "none.json")).offsets() == {}
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    rotated = tmp_path / "old.log"
    rotated.write_bytes(b"b\n")
    old_key = key_of(rotated)
    reg = Registry(str(tmp_path / "reg.json"),
                   {key_of(log): (str(log), 2), (1, 2): (str(tmp_path / "gone.log"), 5),
                    old_key: (str(log) + ".0", 1)})
    checkpoint(reg)
    assert Registry.load(reg.path).offsets() == {key_of(log): (str(log), 2),
                                                 old_key: (str(log) + ".0", 1)}


def test_corrupt_registry_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="REGISTRY_PATH"):
        Registry.load(str(path))

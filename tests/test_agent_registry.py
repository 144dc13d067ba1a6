"""The offset registry: ordered commits, atomic writes, resume by file identity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.block import Block
from agents.registry import AckLedger, Registry, positions_of
from logsig.errors import SettingsError


def key_of(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def test_positions_of_a_batch_take_each_files_last_line() -> None:
    batch = [Block("/a", 0, ["1", "2"], [2, 4], (1, 1)), Block("stdin", 0, ["x"]),
             Block("/b", 0, ["3"], [9], (1, 2)), Block("/a", 0, ["5"], [6], (1, 1))]
    assert positions_of(batch) == {"/a": ((1, 1), 6), "/b": ((1, 2), 9)}


def test_ledger_releases_only_contiguous_acks_in_send_order() -> None:
    ledger = AckLedger()
    seqs = [ledger.register({"/f": ((1, 1), end)}) for end in (10, 20, 30, 40)]
    assert seqs == [0, 1, 2, 3]
    assert ledger.ack(2) == []  # 0 and 1 still out
    assert ledger.ack(1) == []
    assert ledger.ack(0) == [{"/f": ((1, 1), 10)}, {"/f": ((1, 1), 20)}, {"/f": ((1, 1), 30)}]
    assert ledger.ack(0) == []  # a duplicate ack changes nothing
    assert ledger.ack(3) == [{"/f": ((1, 1), 40)}]


def test_save_is_atomic_and_load_round_trips(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 100)
    path = tmp_path / "reg.json"
    reg = Registry(str(path))
    reg.commit({str(log): (key_of(log), 42)})
    assert reg.dirty
    reg.save()
    assert not reg.dirty
    assert sorted(os.listdir(tmp_path)) == ["app.log", "reg.json"]  # no temp file left behind
    doc = json.loads(path.read_text())
    assert doc["files"][str(log)]["offset"] == 42
    assert Registry.load(str(path)).resume_offset(str(log), key_of(log), 100) == 42


def test_failed_save_leaves_the_previous_registry_intact(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 100)
    path = tmp_path / "reg.json"
    reg = Registry(str(path))
    reg.commit({str(log): (key_of(log), 10)})
    reg.save()
    before = path.read_bytes()
    reg.commit({str(log): (key_of(log), 20)})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)  # the process "dies" before the rename
    with pytest.raises(OSError):
        reg.save()
    assert path.read_bytes() == before
    assert reg.dirty


def test_resume_only_for_the_same_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb\nc\n")
    reg = Registry(str(tmp_path / "reg.json"), {str(log): (key_of(log), 4)})
    assert reg.resume_offset(str(log), key_of(log), 6) == 4
    assert reg.resume_offset(str(log), (0, 12345), 6) == 0  # another file now has the name
    assert reg.resume_offset(str(log), key_of(log), 3) == 0  # shrank while we were away
    moved = tmp_path / "app.log.1"
    log.rename(moved)  # renamed while the agent was down: known by identity
    assert reg.resume_offset(str(moved), key_of(moved), 6) == 4


def test_load_drops_vanished_files_and_missing_registry_is_empty(tmp_path: Path) -> None:
    assert Registry.load(str(tmp_path / "none.json")).snapshot() == {}
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    reg = Registry(str(tmp_path / "reg.json"),
                   {str(log): (key_of(log), 2), str(tmp_path / "gone.log"): ((1, 2), 5)})
    reg.dirty = True
    reg.save()
    assert Registry.load(reg.path).snapshot() == {str(log): (key_of(log), 2)}


def test_corrupt_registry_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="REGISTRY_PATH"):
        Registry.load(str(path))

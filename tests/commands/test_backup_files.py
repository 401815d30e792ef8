"""copy_file: a backup's or a restore's copy is on disk before, and after, its rename."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.commands.backup_files import copy_file
from tests.durable import Synced, watch_fsync


def test_a_copy_is_fsynced_before_its_rename_and_its_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "gallery.db"
    source.write_bytes(b"new contents" * 1000)
    target = tmp_path / "backup" / "gallery.db"
    target.parent.mkdir()
    target.write_bytes(b"old")
    synced = watch_fsync(monkeypatch)
    copy_file(source, target)
    monkeypatch.undo()

    assert target.read_bytes() == source.read_bytes()
    assert synced == [
        Synced(False, target.stat().st_ino),  # the staged copy, renamed to the target
        Synced(True, target.parent.stat().st_ino),
    ]
    assert list(target.parent.iterdir()) == [target]

"""Watch the real os.fsync: which files and folders reach the disk, and in what order."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Synced:
    folder: bool
    inode: int


def watch_fsync(monkeypatch: pytest.MonkeyPatch) -> list[Synced]:
    """Every fsync from now on, in order, as (a folder?, inode); each still really runs.
    A power cut cannot be staged here: only that what it would lose is flushed."""
    real_fsync = os.fsync
    synced: list[Synced] = []

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append(Synced(stat.S_ISDIR(info.st_mode), info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced

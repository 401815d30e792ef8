"""write_atomically: a failed write leaves the old file whole and no temp file behind; the
rename is made durable by an fsync of the folder."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.atomic_write import write_atomically

OLD = b"the previous report, whole\n" * 100
NEW = b"the new report, twice as long\n" * 200


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_bytes(OLD)
    return path


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


class DiskFullHalfway:
    """A file object whose write stores the first half of the data, then fails as a full
    disk does."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> DiskFullHalfway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_write_that_fails_halfway_keeps_the_old_file_and_leaves_no_temp_file(
    old_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    written: list[Path] = []

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> DiskFullHalfway:
        written.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        return DiskFullHalfway(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(old_file, NEW)
    monkeypatch.undo()

    # The half was written, to a temp file beside the target, which is gone again.
    assert [path.parent for path in written] == [old_file.parent]
    assert not written[0].exists()
    assert old_file.read_bytes() == OLD
    assert list(old_file.parent.iterdir()) == [old_file]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temp_file(
    old_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(*_: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomically(old_file, NEW)
    monkeypatch.undo()
    assert old_file.read_bytes() == OLD
    assert list(old_file.parent.iterdir()) == [old_file]


def test_a_write_replaces_the_file_whole(old_file: Path) -> None:
    write_atomically(old_file, NEW)
    assert old_file.read_bytes() == NEW
    assert list(old_file.parent.iterdir()) == [old_file]


@pytest.mark.usefixtures("umask_022")
def test_a_file_is_as_readable_as_the_umask_allows_or_private(tmp_path: Path) -> None:
    write_atomically(tmp_path / "report.json", NEW)
    write_atomically(tmp_path / "weights.pt", NEW, private=True)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "weights.pt").stat().st_mode & 0o777 == 0o600


def test_the_folder_is_fsynced_after_the_rename(
    old_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real fsync, watched: what a power cut would lose cannot be shown here, only that
    # the folder holding the rename reaches the disk once the new file is in it.
    real_fsync = os.fsync
    synced: list[tuple[bool, int, bytes]] = []  # (a folder?, its inode, the target then)

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_ino, old_file.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(old_file, NEW)
    monkeypatch.undo()

    # The temp file first, while the target is still the old one; the folder after the
    # rename.
    assert synced == [
        (False, synced[0][1], OLD),
        (True, old_file.parent.stat().st_ino, NEW),
    ]
    assert old_file.read_bytes() == NEW


def test_a_folder_that_cannot_be_opened_is_not_fsynced_and_the_write_stands(
    old_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Windows, where opening a folder is refused: the file is still replaced whole.
    real_open = os.open

    def open_no_folder(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).is_dir():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_no_folder)
    write_atomically(old_file, NEW)
    monkeypatch.undo()
    assert old_file.read_bytes() == NEW
    assert list(old_file.parent.iterdir()) == [old_file]

"""write_atomically: a failed write leaves the old file whole and no temp file behind."""

from __future__ import annotations

import errno
import os
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

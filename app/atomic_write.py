"""Replace a file whole or not at all: a temp file beside it, fsynced, renamed, folder fsynced."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """`data` at `path` through a temp file in the same folder: readers, and a crash, see
    the old file or the new one, never half of one; a failed write leaves no temp file.

    The file is as readable as the umask lets any new file be, or, when `private`, by its
    owner only (mkstemp's 0600, whatever the umask).
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if not private:
            umask = os.umask(0)  # the only way to read it: set it, then put it back
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            # Without it, a power cut soon after the rename can leave an empty file.
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync `folder`: a rename is a change to the folder, not to the file, and without it
    a power cut soon after can bring the old file back (POSIX). Skipped where a folder
    cannot be opened (Windows) or its file system cannot fsync one."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        # Some file systems (some network and FUSE ones) refuse it for a folder: the file
        # is written and renamed all the same. Any other error is a real one.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)

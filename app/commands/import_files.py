"""What the import reads from DIR: its subject folders, and the bytes of each photo."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.commands.import_report import Status, shown

# Every format the service decodes (app/pipeline/image_io.py ACCEPTED_FORMATS).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Album:
    folder: Path  # its name is the subject's
    files: list[Path]
    problem: tuple[str, str] | None = None  # (code, message): why the folder is not imported

    @property
    def name(self) -> str:
        return self.folder.name


class NotUploaded(Exception):
    """A photo that is not sent, for a reason found locally: its report row."""

    def __init__(self, status: Status, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status: Status = status
        self.code = code
        self.message = message


def scan_directory(root: Path) -> list[Album]:
    """Sub-folders of `root` holding images, by name; hidden files and folders are left out.
    Links to folders are followed, wherever they lead.

    A folder that cannot be listed is kept, without files, so that the report says so. So is a
    link that leads back to `root` or a folder above it (a cycle): listing it would take the
    files of `root`, or of a whole disk, for one subject's photos."""
    # The folders the walk is inside of; it never goes deeper than root/<subject>/.
    enclosing = {root.resolve(), *root.resolve().parents}
    albums = []
    for entry in sorted(root.iterdir()):
        if _hidden(entry):
            continue
        try:
            if not entry.is_dir():
                continue
            target = Path(os.path.realpath(entry))
            if target in enclosing:
                message = (
                    f"The folder is a link to {shown(str(target))}, which holds DIR itself; "
                    "it was not listed."
                )
                albums.append(Album(entry, [], problem=("folder_cycle", message)))
                continue
            files = sorted(p for p in entry.iterdir() if _is_image(p))
        except OSError as exc:
            albums.append(Album(entry, [], problem=("unreadable", str(exc) or repr(exc))))
            continue
        if files:
            albums.append(Album(entry, files))
    return albums


def _is_image(path: Path) -> bool:
    """An image's name on anything but a folder. Whatever else it is (a device, a FIFO, a
    broken link) is kept, so that the report says why it was not read."""
    return not _hidden(path) and path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()


def read_photo(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, links followed; NotUploaded if it is not one
    or holds more than `max_bytes`, OSError if it cannot be read.

    Nothing else is ever opened: opening a FIFO waits for a writer forever, and reading a
    device such as /dev/zero never ends. Reading stops after max_bytes + 1 bytes, so even a
    file that grows after the check costs no more memory than that."""
    try:
        found = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
            message = f"The link leads to nothing ({exc.strerror}); nothing was read."
            raise NotUploaded("error", "not_a_regular_file", message) from exc
        raise
    _check_regular_file(path, found)
    if found.st_size > max_bytes:
        raise _too_large(max_bytes)
    # O_NONBLOCK: should a FIFO have taken the file's place since the check, opening it does
    # not wait (for a regular file the flag changes nothing).
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        _check_regular_file(path, os.fstat(handle.fileno()))
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def _check_regular_file(path: Path, found: os.stat_result) -> None:
    if stat.S_ISREG(found.st_mode):
        return
    kind = _FILE_KINDS.get(stat.S_IFMT(found.st_mode), "an unknown kind of file")
    if path.is_symlink():
        what = f"The link leads to {shown(os.path.realpath(path))}, {kind}"
    else:
        what = f"It is {kind}"
    message = f"{what}, not a regular file; it was not read."
    raise NotUploaded("error", "not_a_regular_file", message)


_FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def _too_large(max_bytes: int) -> NotUploaded:
    # The code and status the service gives a file over its limit (HTTP 413).
    message = f"The file is larger than {max_bytes} bytes (FACE_MAX_UPLOAD_BYTES); not uploaded."
    return NotUploaded("rejected", "payload_too_large", message)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")

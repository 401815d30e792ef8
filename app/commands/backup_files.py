"""The backup folder's layout, its manifest, and the file helpers backup and restore share."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints
from sqlalchemy.engine import make_url

from app.atomic_write import sync_folder
from app.commands.serve import PRIVATE_UMASK
from app.config import Settings
from app.services.calibration_import import LEGACY_FILE

MANIFEST = "backup.json"
DATABASE = "faces.db"
# app.training.promote.FINETUNED_DIR and app.training.checkpoints.METADATA_FILE, spelled out:
# importing those modules loads torch, seconds on every start of the command line.
FINETUNED_DIR = "finetuned"
METADATA_FILE = "checkpoint.json"
CHECKPOINTS = f"models/{FINETUNED_DIR}"
# The only paths a backup holds: restore copies nothing else, and nothing outside its targets.
_NAME = r"[^/]*[^/.][^/]*"  # not . or ..
_PATH = rf"^({re.escape(DATABASE)}|{re.escape(LEGACY_FILE)}|{CHECKPOINTS}/{_NAME}/{_NAME})$"
BackupPath = Annotated[str, StringConstraints(pattern=_PATH)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Counts(BaseModel):
    subjects: int
    faces: int
    embeddings: dict[str, int]  # per model version


class Manifest(BaseModel):
    """backup.json: what the backup holds, each file with its sha256."""

    format: Literal[1] = 1
    created_at: datetime
    files_only: bool
    schema_revision: str | None
    counts: Counts | None
    files: dict[BackupPath, Sha256]
    source: dict[str, str]


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file of the configured database; None for any other database."""
    url = make_url(settings.resolved_database_url)
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name.startswith((":memory:", "file:")):
        return None
    return Path(name).expanduser()


def copy_file(source: Path, target: Path) -> None:
    """Copy beside the target, then rename: never a half-written target. Mode: the umask's."""
    os.replace(staged_copy(source, target), target)
    sync_folder(target.parent)


def staged_copy(source: Path, target: Path) -> Path:
    """A copy of `source` in a new file beside `target`, to rename over it. A fresh name
    (O_EXCL), so that a symlink planted in the target's folder is never written through."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, source.open("rb") as data:
            shutil.copyfileobj(data, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())  # on disk before any rename publishes it
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """What is created meanwhile is readable by its owner only: it is biometric data."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def first_missing(dest: Path) -> Path | None:
    """The outermost of `dest` and its parents that does not exist yet."""
    missing = None
    for folder in (dest, *dest.absolute().parents):
        if folder.exists() or folder.is_symlink():
            break
        missing = folder
    return missing


def remove_written(dest: Path, created: Path | None) -> None:
    """Remove what a failed backup wrote: the folders it created, or what it put in `dest`."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for child in dest.iterdir() if dest.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)

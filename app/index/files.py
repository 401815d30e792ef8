"""A saved index on disk: the FAISS file and its `<file>.json` sidecar, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import faiss

from app.atomic_write import sync_folder

logger = logging.getLogger(__name__)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def stage(path: Path, index: Any) -> None:
    """Write the index beside `path` as a temp file; `commit` publishes it with its sidecar.

    Call it while the index cannot change; the slow parts (checksum, fsync) are left to
    `commit`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(_tmp(path)))


def commit(path: Path, meta: dict[str, Any]) -> None:
    """Write the sidecar (`meta` and the staged file's sha256), fsync both, then rename each
    over the saved one."""
    _tmp(sidecar_path(path)).write_text(json.dumps({**meta, "sha256": file_sha256(_tmp(path))}))
    for staged in (_tmp(path), _tmp(sidecar_path(path))):
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
    # Renamed back to back; a crash between them leaves a pair that `read` rejects (the
    # checksum no longer matches) and the service rebuilds from the database.
    os.replace(_tmp(path), path)
    os.replace(_tmp(sidecar_path(path)), sidecar_path(path))
    sync_folder(path.parent)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read(path: Path, expected: dict[str, object]) -> tuple[Any, dict[str, Any]] | None:
    """The FAISS index and sidecar saved at `path`, or None (logged) when missing, corrupt,
    or when the sidecar disagrees with `expected` or with the file.

    The file must match the sha256 its sidecar recorded: FAISS reads a file whose vectors
    were damaged without complaint, and would then serve them.
    """
    sidecar = sidecar_path(path)
    if not path.exists() or not sidecar.exists():
        logger.info("no saved index at %s", path)
        return None
    try:
        meta = json.loads(sidecar.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"sidecar holds a {type(meta).__name__}, not an object")
        recorded = meta.get("sha256")
        if recorded != file_sha256(path):
            raise ValueError(f"the file's sha256 is not the {recorded!r} its sidecar recorded")
        index = faiss.read_index(str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        logger.warning("unreadable index at %s: %s", path, exc)
        return None
    problems = [f"{k}={meta.get(k)!r}" for k, want in expected.items() if meta.get(k) != want]
    if not isinstance(index, faiss.IndexIDMap2):
        problems.append(f"type={type(index).__name__}")
    elif index.d != meta.get("dim") or index.ntotal != meta.get("ntotal"):
        problems.append(f"file has d={index.d} ntotal={index.ntotal}, sidecar {meta}")
    else:
        problems += _tombstone_problems(meta.get("tombstones", []), int(index.ntotal))
    if problems:
        logger.warning("ignoring index at %s: %s", path, ", ".join(problems))
        return None
    return index, meta


def _tombstone_problems(tombstones: object, ntotal: int) -> list[str]:
    """Tombstones are distinct positions inside the file (app/index/tombstones.py)."""
    if not isinstance(tombstones, list):
        return [f"tombstones is a {type(tombstones).__name__}, not a list"]
    valid = [p for p in tombstones if type(p) is int and 0 <= p < ntotal]
    if len(valid) != len(tombstones) or len(set(valid)) != len(valid):
        return [f"tombstones hold values that are not distinct positions below {ntotal}"]
    return []

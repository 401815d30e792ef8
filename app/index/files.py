"""A saved index on disk: the FAISS file and its `<file>.json` sidecar, written atomically."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import faiss

logger = logging.getLogger(__name__)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def stage(path: Path, index: Any, meta: dict[str, Any]) -> None:
    """Write the index and its sidecar beside `path` as temp files; `commit` publishes them.

    Call it while the index cannot change; the slow part (fsync) is left to `commit`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(_tmp(path)))
    _tmp(sidecar_path(path)).write_text(json.dumps(meta))


def commit(path: Path) -> None:
    """fsync the staged pair, then rename each over the saved one."""
    for staged in (_tmp(path), _tmp(sidecar_path(path))):
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
    # Renamed back to back; a crash between them leaves a pair that `read` rejects or that
    # reconcile() repairs against the database.
    os.replace(_tmp(path), path)
    os.replace(_tmp(sidecar_path(path)), sidecar_path(path))


def read(path: Path, expected: dict[str, object]) -> tuple[Any, dict[str, Any]] | None:
    """The FAISS index and sidecar saved at `path`, or None (logged) when missing, corrupt,
    or when the sidecar disagrees with `expected` or with the file."""
    sidecar = sidecar_path(path)
    if not path.exists() or not sidecar.exists():
        logger.info("no saved index at %s", path)
        return None
    try:
        meta = json.loads(sidecar.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"sidecar holds a {type(meta).__name__}, not an object")
        index = faiss.read_index(str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        logger.warning("unreadable index at %s: %s", path, exc)
        return None
    problems = [f"{k}={meta.get(k)!r}" for k, want in expected.items() if meta.get(k) != want]
    if not isinstance(index, faiss.IndexIDMap2):
        problems.append(f"type={type(index).__name__}")
    elif index.d != meta.get("dim") or index.ntotal != meta.get("ntotal"):
        problems.append(f"file has d={index.d} ntotal={index.ntotal}, sidecar {meta}")
    if problems:
        logger.warning("ignoring index at %s: %s", path, ", ".join(problems))
        return None
    return index, meta

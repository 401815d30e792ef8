"""The saved index's files: published by rename, and the rename made durable."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from app.index import files
from tests.durable import Synced, watch_fsync


def test_a_commit_fsyncs_both_files_then_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(4))
    index.add_with_ids(np.eye(4, dtype=np.float32), np.arange(4, dtype=np.int64))
    path = tmp_path / "index" / "v1.faiss"
    files.stage(path, index)
    synced = watch_fsync(monkeypatch)
    files.commit(path, {"model_version": "v1", "dim": 4, "ntotal": 4})
    monkeypatch.undo()

    published = {path.stat().st_ino, files.sidecar_path(path).stat().st_ino}
    assert {s.inode for s in synced[:2]} == published
    assert not any(s.folder for s in synced[:2])
    # Last, after both renames: the folder, without which a power cut can undo them.
    assert synced[2:] == [Synced(True, path.parent.stat().st_ino)]
    loaded = files.read(path, {"model_version": "v1"})
    assert loaded is not None and loaded[0].ntotal == 4

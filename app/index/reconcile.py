"""Open, rebuild and repair a FaceIndex against the database, which is the truth."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from app.index.faiss_index import FaceIndex, IdArray, VectorArray
from app.index.hnsw import IndexKind

logger = logging.getLogger(__name__)

RECONCILE_CHUNK = 10_000

LoadVectors = Callable[[IdArray], VectorArray]
VectorBatches = Iterable[tuple[IdArray, VectorArray]]


@dataclass(frozen=True)
class ReconcileReport:
    added: int
    removed: int
    total: int


def index_path(index_dir: Path, model_version: str, kind: str) -> Path:
    """Where the index of one embedder version and kind lives, e.g. arcface-mbf_9cc6.flat.faiss."""
    safe_version = re.sub(r"[^A-Za-z0-9._-]", "_", model_version).strip(".") or "model"
    return Path(index_dir) / f"{safe_version}.{kind}.faiss"


# How many faces held by both a loaded index and the database are compared vector by vector.
BELONGS_SAMPLE = 32


def belongs(index: FaceIndex, db_ids: npt.ArrayLike, load_vectors: LoadVectors) -> bool:
    """Whether a saved index holds this database's vectors, judged on an evenly spread
    sample of the face ids both hold. reconcile trusts ids alone, and ids restart in another
    database: after FACE_DATABASE_URL changed, or a backup was restored under a data folder
    with a newer index, the same id can be someone else's face."""
    database = np.asarray(db_ids, dtype=np.int64)
    common = np.sort(database[np.isin(database, index.ids(), assume_unique=True)])
    if not len(common):
        return True  # nothing shared: reconcile replaces every entry anyway
    picks = np.unique(np.linspace(0, len(common) - 1, min(BELONGS_SAMPLE, len(common))).round())
    sample = common[picks.astype(np.int64)]
    differ = np.abs(index.stored(sample) - load_vectors(sample)).max(axis=1) > 1e-6
    if differ.any():
        logger.warning(
            "the saved %s index holds other vectors than the database for %d of %d faces "
            "sampled (another database's index?)",
            index.model_version,
            int(differ.sum()),
            len(sample),
        )
    return not differ.any()


def reconcile(
    index: FaceIndex,
    db_ids: npt.ArrayLike,
    load_vectors: LoadVectors,
    chunk: int = RECONCILE_CHUNK,
) -> ReconcileReport:
    """Make the index hold exactly `db_ids`: add what it lacks, drop what the DB no longer has.

    This repairs a crash between a database commit and the matching index write. It
    compares ids only: face ids are never reused and a face's vector under one model
    does not change, so an id present in both is assumed current (open_index first checks
    a sample of them with `belongs`).
    """
    wanted = np.unique(np.asarray(db_ids, dtype=np.int64))
    present = index.ids()
    stale = np.setdiff1d(present, wanted, assume_unique=True)
    missing = np.setdiff1d(wanted, present, assume_unique=True)
    removed = index.remove(stale) if len(stale) else 0
    for start in range(0, len(missing), chunk):
        ids = missing[start : start + chunk]
        index.add(ids, load_vectors(ids))
    report = ReconcileReport(added=len(missing), removed=removed, total=len(index))
    if report.added or report.removed:
        logger.info("reconciled %s index: %s", index.model_version, report)
    return report


def rebuild(dim: int, model_version: str, kind: IndexKind, batches: VectorBatches) -> FaceIndex:
    """A fresh index filled from (ids, vectors) batches, e.g. embeddings_repo.iter_vectors.

    FAISS runs on one thread while serving; a build borrows every core, which makes an
    HNSW build about 1.3x faster on 2 cores and more on bigger machines.
    """
    index = FaceIndex(dim, model_version, kind)
    serving_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        for ids, vectors in batches:
            index.add(ids, vectors)
    finally:
        faiss.omp_set_num_threads(serving_threads)
    return index


def open_index(
    index_dir: Path,
    model_version: str,
    kind: IndexKind,
    dim: int,
    db_ids: npt.ArrayLike,
    load_vectors: LoadVectors,
    batches: VectorBatches,
    rebuild_tombstoned: bool = True,
) -> tuple[FaceIndex, ReconcileReport, Literal["loaded", "rebuilt"]]:
    """Load the saved index when valid, else rebuild it from `batches`; then reconcile.

    `batches` is only iterated on a rebuild. A saved index past its tombstone limit is
    rebuilt too, unless `rebuild_tombstoned` is false (the caller rebuilds it later, in
    the background). Saving the result is left to the caller.
    """
    started = time.perf_counter()
    path = index_path(index_dir, model_version, kind)
    index = FaceIndex.load(path, model_version, kind, dim=dim)
    how: Literal["loaded", "rebuilt"] = "loaded"
    if index is not None and index.needs_rebuild and rebuild_tombstoned:
        logger.info("index at %s has too many tombstones; rebuilding", path)
        index = None
    if index is not None and not belongs(index, db_ids, load_vectors):
        index = None  # rebuilt from the database, the source of truth
    if index is None:
        index = rebuild(dim, model_version, kind, batches)
        how = "rebuilt"
    report = reconcile(index, db_ids, load_vectors)
    logger.info(
        "%s %s index (%d faces) in %.2fs",
        how,
        kind,
        report.total,
        time.perf_counter() - started,
    )
    return index, report, how

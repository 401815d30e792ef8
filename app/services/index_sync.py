"""Keeping the serving index current with faces other processes wrote to a shared database."""

from __future__ import annotations

import logging

import numpy as np

from app.gallery import embeddings_repo
from app.index.faiss_index import FaceIndex
from app.index.reconcile import ReconcileReport
from app.state import AppState

log = logging.getLogger(__name__)


def index_fingerprint(index: FaceIndex) -> tuple[int, int, int]:
    """(count, sum, max) of the index's live ids, as embeddings_repo.fingerprint counts."""
    ids = index.ids()
    return len(ids), int(ids.sum()), int(ids.max()) if len(ids) else 0


def sync_index(state: AppState) -> ReconcileReport | None:
    """Add the faces that the database has and the index lacks, drop those it no longer has.

    Several service processes can share one database; each keeps its own index, which
    learned of the others' writes only at start-up. A one-row fingerprint query finds
    whether anything changed. Only then are the face ids read and compared, outside the
    write lock so that enrolment goes on; under it the differences are checked again
    against the database, since this process may have written some of them meanwhile.
    None when nothing was to be done.
    """
    runtime = state.runtime
    if runtime is None or state.rebuild_lock.locked():  # a rebuild catches up by itself
        return None
    version, index = runtime.model_version, runtime.index
    with state.sessions() as session:
        if embeddings_repo.fingerprint(session, version) == index_fingerprint(index):
            return None
        wanted = embeddings_repo.model_face_ids(session, version)
    present = index.ids()
    missing = np.setdiff1d(wanted, present, assume_unique=True)
    stale = np.setdiff1d(present, wanted, assume_unique=True)
    with state.write_lock:
        if state.runtime is not runtime:  # a model swap or rebuild replaced the index
            return None
        with state.sessions() as session:
            ids, vectors = embeddings_repo.vectors_present(
                session, version, missing[~np.isin(missing, index.ids())]
            )
            kept, _ = embeddings_repo.vectors_present(session, version, stale)
        gone = np.setdiff1d(stale, kept)
        if len(ids):
            index.add(ids, vectors)
        removed = index.remove(gone) if len(gone) else 0
        if len(ids) or removed:
            state.index_dirty = True
    report = ReconcileReport(added=len(ids), removed=removed, total=len(index))
    if report.added or report.removed:
        state.metrics.index_synced.labels("added").inc(report.added)
        state.metrics.index_synced.labels("removed").inc(report.removed)
        state.metrics.index_size.set(report.total)
        log.info("index %s taken up to date with the database: %s", version, report)
    return report

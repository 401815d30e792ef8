"""Keeping the serving index current with faces other processes wrote to a shared database."""

from __future__ import annotations

import logging
import time

import numpy as np

from app.gallery import embeddings_repo
from app.index.faiss_index import FaceIndex, IdArray
from app.index.reconcile import ReconcileReport
from app.state import AppState, Runtime

log = logging.getLogger(__name__)

# Faces read and added per hold of the write lock, so that a large gap (another process's
# bulk import, a long outage) never blocks enrolment for long.
SYNC_CHUNK = 2_000
# Every so many syncs the ids are compared even when the fingerprints agree.
FULL_SYNC_EVERY = 10


class IndexFollower:
    """Syncs the serving index every FACE_INDEX_SYNC_INTERVAL_S, from the model watcher."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._last = time.monotonic()
        self._count = 0

    def tick(self) -> ReconcileReport | None:
        every = self.state.settings.index_sync_interval_s
        if not every or time.monotonic() - self._last < every:
            return None
        self._last = time.monotonic()
        self._count += 1
        return sync_index(self.state, full=self._count % FULL_SYNC_EVERY == 0)


def index_fingerprint(index: FaceIndex) -> tuple[int, int, int, int]:
    """The index's live ids counted as embeddings_repo.fingerprint counts the database's."""
    ids = index.ids().astype(np.int64)
    reduced = ids % embeddings_repo.SQUARES_MODULUS
    largest = int(ids.max()) if len(ids) else 0
    return len(ids), int(ids.sum()), largest, int((reduced * reduced).sum())


def sync_index(state: AppState, full: bool = False) -> ReconcileReport | None:
    """Add the faces that the database has and the index lacks, drop those it no longer has.

    Several service processes can share one database; each keeps its own index, which
    learned of the others' writes only at start-up. A one-row fingerprint query finds
    whether anything changed (`full` compares the ids whatever it says: on PostgreSQL, ids
    committed out of order can leave it equal). The ids are compared outside the write
    lock, so that enrolment goes on; under it each difference is checked again against the
    database, since this process may have written some meanwhile. None: nothing to do.
    """
    runtime = state.runtime
    if runtime is None or state.rebuild_lock.locked():  # a rebuild catches up by itself
        return None
    version, index = runtime.model_version, runtime.index
    with state.sessions() as session:
        if not full and embeddings_repo.fingerprint(session, version) == index_fingerprint(index):
            return None
        wanted = embeddings_repo.model_face_ids(session, version)
    present = index.ids()
    missing = np.setdiff1d(wanted, present, assume_unique=True)
    stale = np.setdiff1d(present, wanted, assume_unique=True)
    added = removed = 0
    for start in range(0, len(missing), SYNC_CHUNK):
        done = _add(state, runtime, index, missing[start : start + SYNC_CHUNK])
        if done is None:
            break
        added += done
    if len(stale):
        removed = _remove(state, runtime, index, stale) or 0
    if not added and not removed:
        return None
    report = ReconcileReport(added=added, removed=removed, total=len(index))
    state.metrics.index_synced.labels("added").inc(added)
    state.metrics.index_synced.labels("removed").inc(removed)
    state.metrics.index_size.set(report.total)
    log.info("index %s taken up to date with the database: %s", version, report)
    return report


def _serving(state: AppState, runtime: Runtime, index: FaceIndex) -> bool:
    """Whether `index` still serves: a model swap replaces the runtime, a rebuild its index."""
    return state.runtime is runtime and runtime.index is index


def _add(state: AppState, runtime: Runtime, index: FaceIndex, ids: IdArray) -> int | None:
    with state.write_lock:
        if not _serving(state, runtime, index):
            return None
        with state.sessions() as session:
            found, vectors = embeddings_repo.vectors_present(
                session, runtime.model_version, ids[~np.isin(ids, index.ids())]
            )
        if len(found):
            index.add(found, vectors)
            state.index_dirty = True
        return len(found)


def _remove(state: AppState, runtime: Runtime, index: FaceIndex, ids: IdArray) -> int | None:
    with state.write_lock:
        if not _serving(state, runtime, index):
            return None
        with state.sessions() as session:
            kept = embeddings_repo.present_face_ids(session, runtime.model_version, ids)
        gone = np.setdiff1d(ids, kept)
        removed = index.remove(gone) if len(gone) else 0
        if removed:
            state.index_dirty = True
        return removed

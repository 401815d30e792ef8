"""Operator maintenance: rebuilding the active index from the database."""

from __future__ import annotations

import logging
import time

from app.gallery import embeddings_repo
from app.index import rebuild, reconcile
from app.schemas.admin import IndexRebuilt
from app.services.model_index import save_index
from app.state import AppState

log = logging.getLogger(__name__)


def rebuild_active_index(state: AppState) -> IndexRebuilt:
    """Replace the active index with one built from the database, the source of truth.

    The build reads a snapshot without the write lock, so enrolments, deletes and searches
    go on meanwhile (at 1M hnsw faces it takes minutes). Under the write lock the new index
    then catches up with what was committed since, and replaces the old one. One rebuild
    runs at a time; a second caller waits for it.
    """
    with state.rebuild_lock:
        runtime = state.require_runtime()
        version = runtime.model_version
        start = time.perf_counter()
        with state.sessions() as session:
            fresh = rebuild(
                runtime.pipeline.embedder.embedding_dim,
                version,
                state.settings.index_type,
                embeddings_repo.iter_vectors(session, version),
            )
        with state.write_lock:
            current = state.require_runtime()
            previous = len(current.index)
            if current is not runtime:
                log.info("model changed during the index rebuild; the new build is dropped")
                return IndexRebuilt(
                    model_version=current.model_version,
                    previous_size=previous,
                    size=previous,
                    seconds=round(time.perf_counter() - start, 3),
                )
            with state.sessions() as session:
                reconcile(
                    fresh,
                    embeddings_repo.model_face_ids(session, version),
                    lambda ids: embeddings_repo.vectors_for(session, version, ids),
                )
            runtime.index = fresh
            save_index(state.settings, fresh)
            state.index_dirty = False
        state.metrics.index_size.set(len(fresh))
        return IndexRebuilt(
            model_version=version,
            previous_size=previous,
            size=len(fresh),
            seconds=round(time.perf_counter() - start, 3),
        )


def rebuild_if_needed(state: AppState) -> IndexRebuilt | None:
    """Rebuild once an hnsw index's tombstones pass their limit, unless a rebuild runs."""
    runtime = state.runtime
    if runtime is None or not runtime.index.needs_rebuild or state.rebuild_lock.locked():
        return None
    log.info("index of %s has too many tombstones; rebuilding it", runtime.model_version)
    done = rebuild_active_index(state)
    log.info("index rebuilt in the background: %s", done)
    return done

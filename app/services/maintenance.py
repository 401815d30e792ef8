"""Operator maintenance: rebuilding the active index from the database."""

from __future__ import annotations

import time

from app.gallery import embeddings_repo
from app.index import rebuild
from app.schemas.admin import IndexRebuilt
from app.services.runtime import save_index
from app.state import AppState


def rebuild_active_index(state: AppState) -> IndexRebuilt:
    """Replace the active index with one built from the DB; writes wait, searches go on."""
    runtime = state.require_runtime()
    start = time.perf_counter()
    with state.write_lock:
        with state.sessions() as session:
            fresh = rebuild(
                runtime.pipeline.embedder.embedding_dim,
                runtime.model_version,
                state.settings.index_type,
                embeddings_repo.iter_vectors(session, runtime.model_version),
            )
        previous = len(runtime.index)
        runtime.index = fresh
        save_index(state.settings, fresh)
        state.index_dirty = False
    state.metrics.index_size.set(len(fresh))
    return IndexRebuilt(
        model_version=runtime.model_version,
        previous_size=previous,
        size=len(fresh),
        seconds=round(time.perf_counter() - start, 3),
    )

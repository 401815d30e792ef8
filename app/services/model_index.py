"""One model version's FAISS index on disk, reconciled with the database when opened."""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import embeddings_repo
from app.index import FaceIndex, index_path, open_index

log = logging.getLogger(__name__)


def open_model_index(
    settings: Settings, sessions: sessionmaker[Session], model_version: str, dim: int
) -> tuple[FaceIndex, str]:
    with sessions() as session:
        db_ids = embeddings_repo.model_face_ids(session, model_version)

        def load_vectors(ids: np.ndarray) -> np.ndarray:
            return embeddings_repo.vectors_for(session, model_version, ids)

        index, report, how = open_index(
            settings.index_dir,
            model_version,
            settings.index_type,
            dim,
            db_ids,
            load_vectors,
            embeddings_repo.iter_vectors(session, model_version),
            # With background rebuilds on, start serving at once and rebuild afterwards.
            rebuild_tombstoned=not settings.index_auto_rebuild,
        )
    log.info(
        "index %s: %s, %d vectors (+%d / -%d reconciled)",
        model_version,
        how,
        report.total,
        report.added,
        report.removed,
    )
    if how != "loaded" or report.added or report.removed:
        save_index(settings, index)
    return index, how


def save_index(settings: Settings, index: FaceIndex) -> None:
    index.save(index_path(settings.index_dir, index.model_version, settings.index_type))

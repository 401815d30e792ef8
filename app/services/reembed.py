"""Embed stored face crops under another embedder version (fine-tuning, rollback, catch-up)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidImage
from app.gallery import embeddings_repo, models_repo
from app.gallery.orm import Face
from app.pipeline.align import align_face
from app.pipeline.embedders import Embedder
from app.pipeline.image_io import decode_png
from app.pipeline.types import FloatArray, ImageArray

log = logging.getLogger(__name__)

EMBED_BATCH = 64


def embed_missing(
    sessions: sessionmaker[Session],
    embedder: Embedder,
    *,
    check: Callable[[], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Give every face that kept a crop a vector under embedder.version; returns how many.

    Commits per batch, so enrolments are never blocked for long. `check` runs before every
    batch and may raise to stop; `on_batch` gets the running count.
    """
    done, after = 0, -1
    while True:
        if check is not None:
            check()
        with sessions() as session:
            rows = models_repo.crops_missing(session, embedder.version, after, EMBED_BATCH)
        if not rows:
            return done
        after = rows[-1][0]
        ids, crops = _aligned(rows, embedder)
        if ids:
            _store(sessions, embedder.version, ids, embedder.embed(crops))
            done += len(ids)
        if on_batch is not None:
            on_batch(done)


def _aligned(
    rows: list[tuple[int, bytes, list[list[float]]]], embedder: Embedder
) -> tuple[list[int], list[ImageArray]]:
    ids: list[int] = []
    crops: list[ImageArray] = []
    for face_id, png, points in rows:
        try:
            crop = decode_png(png)
        except InvalidImage as error:  # one damaged crop must not stop the whole gallery
            log.warning("face %d: %s; not re-embedded", face_id, error.message)
            continue
        landmarks = np.asarray(points, dtype=np.float32)
        crops.append(align_face(crop, landmarks, embedder.template))
        ids.append(face_id)
    return ids, crops


def _store(
    sessions: sessionmaker[Session], version: str, ids: list[int], vectors: FloatArray
) -> None:
    try:
        with sessions.begin() as session:
            embeddings_repo.add_embeddings(session, version, ids, vectors)
    except IntegrityError:
        # A face was deleted while its crop was being embedded: store the survivors.
        with sessions.begin() as session:
            alive = set(session.scalars(select(Face.id).where(Face.id.in_(ids))))
            keep = [i for i, face_id in enumerate(ids) if face_id in alive]
            embeddings_repo.add_embeddings(session, version, [ids[i] for i in keep], vectors[keep])

"""Model-version queries: which embedder version serves, and which faces lack its vectors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.errors import ModelNotFound
from app.gallery.orm import Embedding, Face, ModelVersion, utcnow


def ensure_model(
    s: Session,
    version: str,
    embedder: str,
    sha256: str,
    *,
    weights_path: Path | None = None,
    base_version: str | None = None,
    metrics: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> ModelVersion:
    """The row of `version`, inserted if missing (an existing row is left as it is).

    Service processes starting together on one database can all find the row missing; the
    insert then skips a row another one committed meanwhile instead of failing on its key.
    """
    row = s.get(ModelVersion, version)
    if row is not None:
        return row
    # INSERT ... ON CONFLICT DO NOTHING, which both supported databases have.
    insert: postgresql.Insert | sqlite.Insert
    if s.get_bind().dialect.name == "postgresql":
        insert = postgresql.insert(ModelVersion)
    else:
        insert = sqlite.insert(ModelVersion)
    s.execute(
        insert.values(
            id=version,
            embedder=embedder,
            sha256=sha256,
            weights_path=None if weights_path is None else weights_path.as_posix(),
            base_version=base_version,
            metrics=dict(metrics or {}),
            job_id=job_id,
        ).on_conflict_do_nothing(index_elements=[ModelVersion.id])
    )
    return get_model(s, version)


def find_model(s: Session, version: str) -> ModelVersion | None:
    return s.get(ModelVersion, version)


def get_model(s: Session, version: str) -> ModelVersion:
    row = find_model(s, version)
    if row is None:
        raise ModelNotFound(f"model {version} not found", {"model_id": version})
    return row


def get_model_for_update(s: Session, version: str) -> ModelVersion:
    """`get_model`, the row locked until commit on PostgreSQL: an activation waits."""
    row = s.get(ModelVersion, version, with_for_update=True)
    if row is None:
        raise ModelNotFound(f"model {version} not found", {"model_id": version})
    return row


def derived_versions(s: Session, version: str) -> list[str]:
    """The versions fine-tuned from `version` (their base_version), oldest first."""
    query = select(ModelVersion.id).where(ModelVersion.base_version == version)
    return list(s.scalars(query.order_by(ModelVersion.created_at)))


def delete_model(s: Session, row: ModelVersion) -> None:
    """Delete a version's vectors and its row; callers first check nothing needs it."""
    delete_embeddings(s, row.id)
    s.delete(row)
    s.flush()


def list_models(s: Session) -> list[ModelVersion]:
    return list(s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))


def active_model(s: Session, embedder: str) -> ModelVersion | None:
    """The most recently activated version of `embedder`; None means its packaged weights."""
    query = (
        select(ModelVersion)
        .where(ModelVersion.embedder == embedder, ModelVersion.activated_at.is_not(None))
        .order_by(ModelVersion.activated_at.desc())
    )
    return s.scalars(query.limit(1)).first()


def activate(s: Session, version: str) -> ModelVersion:
    row = get_model(s, version)
    row.activated_at = utcnow()
    s.flush()
    return row


def embedding_counts(s: Session) -> dict[str, int]:
    """Stored vectors per model version."""
    rows = s.execute(select(Embedding.model, func.count()).group_by(Embedding.model))
    return {str(model): int(count) for model, count in rows}


def delete_embeddings(s: Session, version: str) -> None:
    s.execute(delete(Embedding).where(Embedding.model == version))


def discard_unregistered(s: Session, version: str) -> bool:
    """Delete the vectors of a version no model row names (a promotion that never
    committed); False, deleting nothing, when one does."""
    if find_model(s, version) is not None:
        return False
    delete_embeddings(s, version)
    return True


def _lacks_vector(version: str) -> Any:
    has_vector = exists().where(Embedding.face_id == Face.id, Embedding.model == version)
    return Face.crop.is_not(None) & Face.crop_landmarks.is_not(None) & ~has_vector


def crops_missing(
    s: Session, version: str, after: int = -1, limit: int = 256
) -> list[tuple[int, bytes, list[list[float]]]]:
    """(face id, crop PNG, crop landmarks) of faces with a crop but no `version` vector."""
    rows = s.execute(
        select(Face.id, Face.crop, Face.crop_landmarks)
        .where(_lacks_vector(version), Face.id > after)
        .order_by(Face.id)
        .limit(limit)
    )
    # The WHERE clause excludes NULL crops and landmarks.
    return [(face_id, crop, points) for face_id, crop, points in rows if crop and points]


def count_crops_missing(s: Session, version: str) -> int:
    query = select(func.count()).select_from(Face).where(_lacks_vector(version))
    return s.scalar(query) or 0


def count_without_crop(s: Session) -> int:
    """Faces that cannot be re-embedded because no crop was kept (FACE_STORE_CROPS=false)."""
    return s.scalar(select(func.count()).select_from(Face).where(Face.crop.is_(None))) or 0


def subject_crops(
    s: Session, after: int = -1, limit: int = 1000
) -> list[tuple[int, str, bytes, list[list[float]]]]:
    """(face id, subject id, crop PNG, crop landmarks) of faces with crops, in id order."""
    rows = s.execute(
        select(Face.id, Face.subject_id, Face.crop, Face.crop_landmarks)
        .where(Face.crop.is_not(None), Face.crop_landmarks.is_not(None), Face.id > after)
        .order_by(Face.id)
        .limit(limit)
    )
    return [(i, subject, crop, points) for i, subject, crop, points in rows if crop and points]


def trainable_faces(s: Session) -> list[tuple[int, str]]:
    """(face id, subject id) of the faces fine-tuning can load at most: those with a crop
    and its landmarks, of subjects with two or more of them."""
    rows = s.execute(
        select(Face.id, Face.subject_id).where(
            Face.crop.is_not(None), Face.crop_landmarks.is_not(None)
        )
    ).all()
    per_subject = Counter(subject for _, subject in rows)
    return [(face_id, subject) for face_id, subject in rows if per_subject[subject] >= 2]

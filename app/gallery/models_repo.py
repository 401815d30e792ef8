"""Model-version queries: which embedder version serves, and which faces lack its vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.errors import ModelNotFound
from app.gallery.jobs_repo import ACTIVE_STATES
from app.gallery.orm import Embedding, Face, Job, ModelVersion, utcnow


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


def derived_versions(s: Session, version: str) -> list[str]:
    """The versions fine-tuned from `version` (their base_version), oldest first."""
    query = select(ModelVersion.id).where(ModelVersion.base_version == version)
    return list(s.scalars(query.order_by(ModelVersion.created_at)))


def delete_unneeded(s: Session, version: str) -> bool:
    """Delete a version's row, then its vectors, unless the database says something needs
    it; False, deleting nothing, when it does or when the row is gone.

    One statement decides, so an activation, promotion or delete running at the same time
    lands wholly before it and is seen, or after it and finds the row gone: PostgreSQL's
    row lock and SQLite's single writer order them. Checks read earlier could be stale.
    """
    other = aliased(ModelVersion)
    latest = select(func.max(other.activated_at)).where(other.embedder == ModelVersion.embedder)
    derived = select(other.id).where(other.base_version == ModelVersion.id)
    unneeded = (
        ModelVersion.weights_path.is_not(None),  # not the packaged weights
        # Not its embedder's active model: the latest activation (a tie counts as active).
        or_(
            ModelVersion.activated_at.is_(None),
            ModelVersion.activated_at < latest.scalar_subquery(),
        ),
        ~derived.exists(),
        # A job records its base model only when it ends, so any version may be it.
        ~exists().where(Job.state.in_(ACTIVE_STATES)),
    )
    query = delete(ModelVersion).where(ModelVersion.id == version, *unneeded)
    deleted = s.execute(query.execution_options(synchronize_session=False))
    if not getattr(deleted, "rowcount", 0):
        return False
    delete_embeddings(s, version)
    return True


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
    """Make `version` its embedder's active model; ModelNotFound if it has no row.

    One UPDATE that must find the row: one deleted since the caller read it is not found,
    rather than an error at flush.
    """
    query = update(ModelVersion).where(ModelVersion.id == version).values(activated_at=utcnow())
    if not getattr(s.execute(query), "rowcount", 0):
        raise ModelNotFound(f"model {version} not found", {"model_id": version})
    return get_model(s, version)


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

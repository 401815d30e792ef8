"""SQLAlchemy tables: subjects, faces, embeddings, model versions, calibrations and jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from app.gallery.column_types import UTCDateTime
from app.gallery.names import fold_name

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL gets
# a 64-bit id so face ids always fit the int64 labels of the FAISS index.
FaceId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_subject_id() -> str:
    return str(uuid.uuid4())


def new_job_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Subject(Base):
    """A person enrolled in the gallery."""

    __tablename__ = "subjects"
    # The listing's order and its cursor: a page is read from here, not sorted from every row.
    __table_args__ = (Index("ix_subjects_created_at_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_subject_id)
    name: Mapped[str] = mapped_column(String(255), index=True)
    # names.fold_name of the name (accents dropped, NFKC, casefold), set with every name: the
    # name filter compares it, the same on SQLite and PostgreSQL (whose lower()/ILIKE follow
    # the database's locale, often C). NFKC can make a name 18 times longer (U+FDFA), hence
    # no bound on PostgreSQL (migration 0007); SQLite enforces none, and rebuilding its table
    # to retype the column would cascade-delete every face, so it keeps VARCHAR(1024).
    name_folded: Mapped[str | None] = mapped_column(
        Text().with_variant(String(1024), "sqlite"), nullable=True
    )
    # `metadata` is reserved by the declarative base, hence the trailing underscore.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    faces: Mapped[list[Face]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("name")
    def _fold(self, _key: str, name: str) -> str:
        self.name_folded = fold_name(name)
        return name


class Face(Base):
    """One enrolled face; its id is also its label in the FAISS index."""

    __tablename__ = "faces"
    # AUTOINCREMENT stops SQLite from reusing the id of a deleted last row, which would let a
    # new face inherit a stale vector left in an index that missed the delete.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(FaceId, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    box: Mapped[list[float]] = mapped_column(JSON)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    crop_landmarks: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="faces")
    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="face", cascade="all, delete-orphan", passive_deletes=True
    )


class Embedding(Base):
    """A face's vector under one embedder version; several models can coexist per face."""

    __tablename__ = "embeddings"
    __table_args__ = (Index("ix_embeddings_model_face_id", "model", "face_id"),)

    face_id: Mapped[int] = mapped_column(
        FaceId, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32

    face: Mapped[Face] = relationship(back_populates="embeddings")


class ModelVersion(Base):
    """An embedder version that can serve: the packaged weights or a fine-tune of them."""

    __tablename__ = "models"

    # The embedder version ("arcface-mbf@<sha12>"), the same key as embeddings.model.
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    embedder: Mapped[str] = mapped_column(String(100))
    base_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Relative to the models folder; None for the packaged (pretrained) weights.
    weights_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # An embedder's active model is its most recently activated row (the base when none is).
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StoredCalibration(Base):
    """A model version's calibrated thresholds (services/calibration.Calibration as JSON),
    here so that every process sharing the database serves the same ones."""

    __tablename__ = "calibrations"

    model_version: Mapped[str] = mapped_column(String(100), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Set by every save: processes compare it to notice another's calibration.
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """A fine-tuning run; the worker process writes its progress and result as JSON."""

    __tablename__ = "jobs"
    # At most one job holds the training slot, even when several processes (service
    # workers, the command line) share the database: a second row in an active state is a
    # unique violation (migration 0005). The states are jobs_repo.ACTIVE_STATES.
    __table_args__ = (
        Index(
            "uq_jobs_one_active",
            "slot",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running', 'cancelling')"),
            postgresql_where=text("state IN ('queued', 'running', 'cancelling')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_job_id)
    state: Mapped[str] = mapped_column(String(20), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The process answerable for the job (its creator while queued, then the one running
    # it) and when it last said it was alive: a job whose process is gone can then be
    # ended by any other. None on rows written before migration 0004.
    owner_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # 1 on every row; the partial unique index above makes it the slot an active job holds.
    slot: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

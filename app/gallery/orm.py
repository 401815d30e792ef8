"""SQLAlchemy tables of the gallery: subjects, their faces and per-model embeddings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL gets
# a 64-bit id so face ids always fit the int64 labels of the FAISS index.
FaceId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetime; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_subject_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Subject(Base):
    """A person enrolled in the gallery."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_subject_id)
    name: Mapped[str] = mapped_column(String(255), index=True)
    # `metadata` is reserved by the declarative base, hence the trailing underscore.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    faces: Mapped[list[Face]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )


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
    __table_args__ = (Index("ix_embeddings_model", "model"),)

    face_id: Mapped[int] = mapped_column(
        FaceId, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32

    face: Mapped[Face] = relationship(back_populates="embeddings")

"""Gallery queries; every function flushes and none commits: callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, exists, func, insert, inspect, select
from sqlalchemy.orm import Session

from app.errors import FaceNotFound, SubjectNotFound
from app.gallery.orm import Embedding, Face, Subject

EMBEDDING_DIM = 512
# Stays under SQLite's bound-parameter limit (999 before 3.32) in IN (...) lists.
_IN_CHUNK = 500
_VECTOR_DTYPE = np.dtype("<f4")  # stored little-endian whatever the host

IdArray = npt.NDArray[np.int64]
VectorArray = npt.NDArray[np.float32]


def create_subject(s: Session, name: str, metadata: dict[str, Any] | None = None) -> Subject:
    subject = Subject(name=name, metadata_=dict(metadata or {}))
    s.add(subject)
    s.flush()
    return subject


def get_subject(s: Session, subject_id: str) -> Subject:
    subject = s.get(Subject, subject_id)
    if subject is None:
        raise SubjectNotFound(f"subject {subject_id} not found", {"subject_id": subject_id})
    return subject


def list_subjects(
    s: Session, limit: int, offset: int, name: str | None = None
) -> tuple[list[Subject], int]:
    """A page of subjects, oldest first, and the total matching count.

    `name` keeps subjects whose name contains it, ignoring case (ASCII-only on SQLite);
    `%` and `_` in it match literally.
    """
    query = select(Subject)
    if name:
        query = query.where(Subject.name.icontains(name, autoescape=True))
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = s.scalars(query.order_by(Subject.created_at, Subject.id).limit(limit).offset(offset))
    return list(page), total


def update_subject(
    s: Session,
    subject_id: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Subject:
    """Replace the fields that are given; `metadata` replaces the whole mapping."""
    subject = get_subject(s, subject_id)
    if name is not None:
        subject.name = name
    if metadata is not None:
        subject.metadata_ = dict(metadata)
    s.flush()
    return subject


def delete_subject(s: Session, subject_id: str) -> list[int]:
    """Delete a subject with its faces and embeddings; returns the face ids to unindex."""
    subject = get_subject(s, subject_id)
    face_ids = list(s.scalars(select(Face.id).where(Face.subject_id == subject_id)))
    s.delete(subject)  # the database cascades to faces and embeddings
    s.flush()
    _forget(s, face_ids)
    return face_ids


def face_counts(s: Session, subject_ids: Sequence[str]) -> dict[str, int]:
    """Faces per subject for every id asked about, 0 for those without any."""
    counts = dict.fromkeys(subject_ids, 0)
    for chunk in _chunks(list(counts)):
        rows = s.execute(
            select(Face.subject_id, func.count(Face.id))
            .where(Face.subject_id.in_(chunk))
            .group_by(Face.subject_id)
        )
        for subject_id, count in rows:
            counts[subject_id] = count
    return counts


def add_face(
    s: Session,
    subject_id: str,
    *,
    box: Sequence[float],
    landmarks: Sequence[Sequence[float]],
    quality: dict[str, Any],
    image_sha256: str,
    crop: bytes | None,
    crop_landmarks: Sequence[Sequence[float]] | None,
    model: str,
    vector: npt.ArrayLike,
) -> Face:
    """Insert a face and its embedding under `model`; the returned face has its id set."""
    get_subject(s, subject_id)
    face = Face(
        subject_id=subject_id,
        box=[float(v) for v in box],
        landmarks=[[float(v) for v in point] for point in landmarks],
        quality=dict(quality),
        image_sha256=image_sha256,
        crop=crop,
        crop_landmarks=(
            None if crop_landmarks is None else [[float(v) for v in p] for p in crop_landmarks]
        ),
    )
    face.embeddings.append(Embedding(model=model, vector=_encode(vector)))
    s.add(face)
    s.flush()
    return face


def list_faces(s: Session, subject_id: str) -> list[Face]:
    get_subject(s, subject_id)
    return list(s.scalars(select(Face).where(Face.subject_id == subject_id).order_by(Face.id)))


def delete_face(s: Session, subject_id: str, face_id: int) -> None:
    """Delete one face; FaceNotFound when it does not exist or belongs to someone else."""
    get_subject(s, subject_id)
    face = s.get(Face, face_id)
    if face is None or face.subject_id != subject_id:
        raise FaceNotFound(
            f"face {face_id} not found for subject {subject_id}",
            {"subject_id": subject_id, "face_id": face_id},
        )
    s.delete(face)
    s.flush()
    _forget(s, [face_id])


def subject_has_image(s: Session, subject_id: str, image_sha256: str) -> bool:
    query = exists().where(Face.subject_id == subject_id, Face.image_sha256 == image_sha256)
    return bool(s.scalar(select(query)))


def subject_vectors(s: Session, subject_id: str, model: str) -> VectorArray:
    """(n, 512) vectors of a subject's faces under `model`, in face id order."""
    rows = s.scalars(
        select(Embedding.vector)
        .join(Face, Face.id == Embedding.face_id)
        .where(Face.subject_id == subject_id, Embedding.model == model)
        .order_by(Embedding.face_id)
    )
    return _decode(list(rows))


def model_face_ids(s: Session, model: str) -> IdArray:
    """Sorted ids of the faces that have an embedding under `model`."""
    query = select(Embedding.face_id).where(Embedding.model == model).order_by(Embedding.face_id)
    return np.fromiter(s.scalars(query), dtype=np.int64)


def vectors_for(s: Session, model: str, face_ids: Iterable[int]) -> VectorArray:
    """Vectors of `face_ids` in the order given; KeyError names any without one."""
    wanted = [int(i) for i in face_ids]
    found: dict[int, bytes] = {}
    for chunk in _chunks(wanted):
        rows = s.execute(
            select(Embedding.face_id, Embedding.vector).where(
                Embedding.model == model, Embedding.face_id.in_(chunk)
            )
        )
        for face_id, vector in rows:
            found[face_id] = vector
    missing = [i for i in wanted if i not in found]
    if missing:
        raise KeyError(f"no {model} embedding for faces {missing[:10]}")
    return _decode([found[i] for i in wanted])


def iter_vectors(
    s: Session, model: str, batch: int = 10_000
) -> Iterator[tuple[IdArray, VectorArray]]:
    """All (ids, vectors) under `model` in id order, `batch` rows per query (keyset paging)."""
    after = -1
    while True:
        rows = s.execute(
            select(Embedding.face_id, Embedding.vector)
            .where(Embedding.model == model, Embedding.face_id > after)
            .order_by(Embedding.face_id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield np.array([r[0] for r in rows], dtype=np.int64), _decode([r[1] for r in rows])
        after = rows[-1][0]


def subjects_for_faces(s: Session, face_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Face id -> (subject id, subject name) for the faces that still exist."""
    result: dict[int, tuple[str, str]] = {}
    for chunk in _chunks([int(i) for i in face_ids]):
        rows = s.execute(
            select(Face.id, Subject.id, Subject.name)
            .join(Subject, Subject.id == Face.subject_id)
            .where(Face.id.in_(chunk))
        )
        result.update({face_id: (sid, name) for face_id, sid, name in rows})
    return result


def count_faces(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Face)) or 0


def count_subjects(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Subject)) or 0


def add_embeddings(s: Session, model: str, face_ids: Sequence[int], vectors: npt.ArrayLike) -> None:
    """Store (or replace) the `model` vectors of existing faces, e.g. after fine-tuning."""
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or len(matrix) != len(face_ids):
        raise ValueError(f"expected {len(face_ids)} vectors, got shape {matrix.shape}")
    ids = [int(i) for i in face_ids]
    for chunk in _chunks(ids):
        s.execute(delete(Embedding).where(Embedding.model == model, Embedding.face_id.in_(chunk)))
    if ids:
        rows = [
            {"face_id": i, "model": model, "vector": _encode(v)}
            for i, v in zip(ids, matrix, strict=True)
        ]
        s.execute(insert(Embedding), rows)
    s.flush()


def faces_with_crops(s: Session, batch: int = 256) -> Iterator[Face]:
    """Every face that kept its aligned crop, in id order, fetched `batch` at a time."""
    after = -1
    while True:
        query = select(Face).where(Face.crop.is_not(None), Face.id > after).order_by(Face.id)
        faces = list(s.scalars(query.limit(batch)))
        if not faces:
            return
        yield from faces
        after = faces[-1].id


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _forget(s: Session, face_ids: list[int]) -> None:
    # The database cascaded these deletes behind the ORM's back (passive_deletes); drop the
    # stale copies so a later get() in this session cannot return a deleted row.
    gone = set(face_ids)
    for obj in list(s.identity_map.values()):
        identity = inspect(obj).identity or ()
        # Expunging a face cascades to its loaded embeddings, hence the membership check.
        if isinstance(obj, Face | Embedding) and identity and identity[0] in gone and obj in s:
            s.expunge(obj)


def _encode(vector: npt.ArrayLike) -> bytes:
    array = np.asarray(vector, dtype=_VECTOR_DTYPE)
    if array.shape != (EMBEDDING_DIM,):
        raise ValueError(f"expected a ({EMBEDDING_DIM},) vector, got shape {array.shape}")
    return array.tobytes()


def _decode(blobs: list[bytes]) -> VectorArray:
    if not blobs:
        return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype=_VECTOR_DTYPE).reshape(len(blobs), -1)
    return matrix.astype(np.float32)

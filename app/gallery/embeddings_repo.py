"""Embedding vector queries; like repository.py, functions flush and callers commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.gallery.orm import Embedding, Face

EMBEDDING_DIM = 512
# Stays under SQLite's bound-parameter limit (999 before 3.32) in IN (...) lists.
_IN_CHUNK = 500
_VECTOR_DTYPE = np.dtype("<f4")  # stored little-endian whatever the host

IdArray = npt.NDArray[np.int64]
VectorArray = npt.NDArray[np.float32]


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


# The squares in a fingerprint are of ids modulo this prime, so that their sum stays within
# SQLite's 64-bit integers for up to 2 billion faces.
SQUARES_MODULUS = 65521


def fingerprint(s: Session, model: str) -> tuple[int, int, int, int]:
    """(count, sum, max, sum of squares modulo SQUARES_MODULUS) of the face ids with a
    `model` vector: one row, from the index on (model, face_id), to tell cheaply whether an
    index holding the same ids is current. Without the squares, ids deleted through another
    process offset ids enrolled through it exactly often enough (1 + 2 against 0 + 3) to
    hide the difference until the full comparison, ten sync intervals later (an audit)."""
    reduced = Embedding.face_id % SQUARES_MODULUS
    count, total, largest, squares = s.execute(
        select(
            func.count(Embedding.face_id),
            func.coalesce(func.sum(Embedding.face_id), 0),
            func.coalesce(func.max(Embedding.face_id), 0),
            func.coalesce(func.sum(reduced * reduced), 0),
        ).where(Embedding.model == model)
    ).one()
    return int(count), int(total), int(largest), int(squares)


def present_face_ids(s: Session, model: str, face_ids: Iterable[int]) -> IdArray:
    """Those of `face_ids` that still have a `model` vector."""
    found: list[int] = []
    for chunk in in_chunks([int(i) for i in face_ids]):
        query = select(Embedding.face_id).where(
            Embedding.model == model, Embedding.face_id.in_(chunk)
        )
        found.extend(s.scalars(query))
    return np.array(sorted(found), dtype=np.int64)


def vectors_present(s: Session, model: str, face_ids: Iterable[int]) -> tuple[IdArray, VectorArray]:
    """The (ids, vectors) of those of `face_ids` that still have a `model` vector."""
    ids: list[int] = []
    blobs: list[bytes] = []
    for chunk in in_chunks([int(i) for i in face_ids]):
        rows = s.execute(
            select(Embedding.face_id, Embedding.vector).where(
                Embedding.model == model, Embedding.face_id.in_(chunk)
            )
        )
        for face_id, vector in rows:
            ids.append(face_id)
            blobs.append(vector)
    return np.array(ids, dtype=np.int64), _decode(blobs)


def vectors_for(s: Session, model: str, face_ids: Iterable[int]) -> VectorArray:
    """Vectors of `face_ids` in the order given; KeyError names any without one."""
    wanted = [int(i) for i in face_ids]
    found: dict[int, bytes] = {}
    for chunk in in_chunks(wanted):
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


def add_embeddings(s: Session, model: str, face_ids: Sequence[int], vectors: npt.ArrayLike) -> None:
    """Store (or replace) the `model` vectors of existing faces, e.g. after fine-tuning."""
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or len(matrix) != len(face_ids):
        raise ValueError(f"expected {len(face_ids)} vectors, got shape {matrix.shape}")
    ids = [int(i) for i in face_ids]
    for chunk in in_chunks(ids):
        s.execute(delete(Embedding).where(Embedding.model == model, Embedding.face_id.in_(chunk)))
    if ids:
        rows = [
            {"face_id": i, "model": model, "vector": encode_vector(v)}
            for i, v in zip(ids, matrix, strict=True)
        ]
        s.execute(insert(Embedding), rows)
    s.flush()


def in_chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def encode_vector(vector: npt.ArrayLike) -> bytes:
    array = np.asarray(vector, dtype=_VECTOR_DTYPE)
    if array.shape != (EMBEDDING_DIM,):
        raise ValueError(f"expected a ({EMBEDDING_DIM},) vector, got shape {array.shape}")
    return array.tobytes()


def _decode(blobs: list[bytes]) -> VectorArray:
    if not blobs:
        return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype=_VECTOR_DTYPE).reshape(len(blobs), -1)
    return matrix.astype(np.float32)

"""Gallery queries; every function flushes and none commits: callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import numpy.typing as npt
from sqlalchemy import CursorResult, delete, func, inspect, select, tuple_
from sqlalchemy.orm import Session, aliased, defer
from sqlalchemy.orm.exc import StaleDataError

from app.errors import FaceNotFound, SubjectNotFound
from app.gallery.embeddings_repo import encode_vector, in_chunks
from app.gallery.names import fold_name
from app.gallery.orm import Embedding, Face, Subject
from app.gallery.planner_hints import rarely_true, unindexed


def create_subject(s: Session, name: str, metadata: dict[str, Any] | None = None) -> Subject:
    subject = Subject(name=name, metadata_=dict(metadata or {}))
    s.add(subject)
    s.flush()
    return subject


def get_subject(s: Session, subject_id: str, lock: bool = False) -> Subject:
    """The subject, or SubjectNotFound. `lock` (before writing under it) takes a row lock
    on PostgreSQL, so that a delete committing meanwhile in another process is waited for
    and seen, not met as a foreign-key or stale-row error; SQLite serialises writes anyway.
    """
    subject = s.get(Subject, subject_id, with_for_update=lock or None, populate_existing=lock)
    if subject is None:
        raise SubjectNotFound(f"subject {subject_id} not found", {"subject_id": subject_id})
    return subject


def list_subjects(
    s: Session,
    limit: int,
    offset: int,
    name: str | None = None,
    after: tuple[datetime, str] | None = None,
) -> tuple[list[tuple[Subject, int]], int]:
    """A page of subjects, oldest first, each with its face count, and the total matching.

    `name` keeps subjects whose name contains it, both folded by fold_name: case in any
    script and accents ("jose" finds "José", and back) are ignored. `%` and `_` match literally.
    `after` (created_at, id) starts the page after that place in the order; the total
    still counts every match.
    """
    query = select(Subject)
    if name:
        query = query.where(
            rarely_true(Subject.name_folded.contains(fold_name(name), autoescape=True))
        )
    # The page, its face counts and the total come from one statement, so all three see
    # the same rows while other requests write (separate queries disagreed then).
    # (A window count would buffer every matching row before LIMIT: 4-7x slower at 300k.)
    count = select(func.count()).select_from(query.subquery())
    if after is not None:
        created, subject_id = after
        # A name search reads the whole table anyway (a substring has no index), so its
        # cursor only filters; a plain listing seeks its place in the order's index.
        place = (
            (unindexed(Subject.created_at), unindexed(Subject.id))
            if name
            else (Subject.created_at, Subject.id)
        )
        query = query.where(tuple_(*place) > (created, subject_id))
    ordered = query.order_by(Subject.created_at, Subject.id)
    page = aliased(Subject, ordered.limit(limit).offset(offset).subquery())
    # Counted on the page's rows only, after LIMIT.
    faces = select(func.count(Face.id)).where(Face.subject_id == page.id).scalar_subquery()
    rows = s.execute(
        select(page, faces.label("faces"), count.scalar_subquery().label("total")).order_by(
            page.created_at, page.id
        )
    ).all()
    if rows:
        return [(row[0], int(row.faces)) for row in rows], int(rows[0].total)
    # An empty page (past the end, or nothing matches) carries no count.
    return [], s.scalar(count) or 0


def update_subject(
    s: Session,
    subject_id: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Subject:
    """Replace the fields that are given; `metadata` replaces the whole mapping."""
    subject = get_subject(s, subject_id, lock=True)
    if name is not None:
        subject.name = name
    if metadata is not None:
        subject.metadata_ = dict(metadata)
    try:
        s.flush()
    except StaleDataError as error:  # deleted since it was read (SQLite takes no row lock)
        raise SubjectNotFound(
            f"subject {subject_id} not found", {"subject_id": subject_id}
        ) from error
    return subject


def delete_subject(s: Session, subject_id: str) -> list[int]:
    """Delete a subject with its faces and embeddings; returns the face ids to unindex.
    Locked first: two processes deleting one subject at once both answered 204."""
    s.expunge(get_subject(s, subject_id, lock=True))
    face_ids = list(s.scalars(select(Face.id).where(Face.subject_id == subject_id)))
    # A statement, not the ORM's delete, for its row count; the database cascades to faces
    # and embeddings.
    gone = s.execute(
        delete(Subject).where(Subject.id == subject_id),
        execution_options={"synchronize_session": False},
    )
    if cast(CursorResult[Any], gone).rowcount != 1:  # deleted since (SQLite takes no lock)
        raise SubjectNotFound(f"subject {subject_id} not found", {"subject_id": subject_id})
    _forget(s, face_ids)
    return face_ids


def face_counts(s: Session, subject_ids: Sequence[str]) -> dict[str, int]:
    """Faces per subject for every id asked about, 0 for those without any."""
    counts = dict.fromkeys(subject_ids, 0)
    for chunk in in_chunks(list(counts)):
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
    face.embeddings.append(Embedding(model=model, vector=encode_vector(vector)))
    s.add(face)
    s.flush()
    return face


def list_faces(
    s: Session, subject_id: str, limit: int, offset: int, after: int = 0
) -> tuple[list[Face], int]:
    """A page of the subject's faces in id order (ids above `after`), and how many it has
    in all. Without their crops (PNG, ~50 KB each; touching one raises): read for nothing,
    they made one listing of a large subject read hundreds of MB."""
    get_subject(s, subject_id)
    mine = Face.subject_id == subject_id
    count = select(func.count(Face.id)).where(mine)
    # Page and total in one statement, as in list_subjects, so they agree under writes.
    rows = s.execute(
        select(Face, count.correlate(None).scalar_subquery().label("total"))
        .where(mine, Face.id > after)
        .options(defer(Face.crop, raiseload=True))
        .order_by(Face.id)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0].total)
    return [], s.scalar(count) or 0


def delete_face(s: Session, subject_id: str, face_id: int) -> None:
    """Delete one face; FaceNotFound when it does not exist or belongs to someone else."""
    get_subject(s, subject_id)
    face = s.get(Face, face_id, options=[defer(Face.crop)])  # deleting needs no crop
    if face is None or face.subject_id != subject_id:
        raise FaceNotFound(
            f"face {face_id} not found for subject {subject_id}",
            {"subject_id": subject_id, "face_id": face_id},
        )
    s.delete(face)
    s.flush()
    _forget(s, [face_id])


def face_with_image(s: Session, subject_id: str, image_sha256: str) -> int | None:
    """The id of the subject's face enrolled from this image, if there is one."""
    query = select(Face.id).where(Face.subject_id == subject_id, Face.image_sha256 == image_sha256)
    return s.scalars(query.limit(1)).first()


def subjects_for_faces(s: Session, face_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Face id -> (subject id, subject name) for the faces that still exist."""
    result: dict[int, tuple[str, str]] = {}
    for chunk in in_chunks([int(i) for i in face_ids]):
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


def count_subjects_with_faces(s: Session) -> int:
    return s.scalar(select(func.count(func.distinct(Face.subject_id)))) or 0


def _forget(s: Session, face_ids: list[int]) -> None:
    # The database cascaded these deletes behind the ORM's back (passive_deletes); drop the
    # stale copies so a later get() in this session cannot return a deleted row.
    gone = set(face_ids)
    for obj in list(s.identity_map.values()):
        identity = inspect(obj).identity or ()
        # Expunging a face cascades to its loaded embeddings, hence the membership check.
        if isinstance(obj, Face | Embedding) and identity and identity[0] in gone and obj in s:
            s.expunge(obj)

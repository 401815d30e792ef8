"""Subject and face management: DB first, then the index."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import InvalidRequest, problem
from app.gallery import repository
from app.gallery.orm import Face, Subject
from app.schemas.common import QualityPublic
from app.schemas.subjects import FaceList, FacePublic, SubjectList, SubjectPublic
from app.services import page_cursors
from app.state import AppState, Runtime


def subject_public(subject: Subject, face_count: int) -> SubjectPublic:
    return SubjectPublic(
        id=subject.id,
        name=subject.name,
        metadata=subject.metadata_,
        created_at=subject.created_at,
        updated_at=subject.updated_at,
        face_count=face_count,
    )


def face_public(face: Face) -> FacePublic:
    return FacePublic(
        id=face.id,
        box=list(face.box),
        landmarks=face.landmarks,
        quality=QualityPublic(**face.quality),
        image_sha256=face.image_sha256,
        created_at=face.created_at,
    )


def create_subject(state: AppState, name: str, metadata: dict[str, Any]) -> SubjectPublic:
    with state.sessions() as session, session.begin():
        subject = repository.create_subject(session, name, metadata)
        result = subject_public(subject, 0)
    state.metrics.subjects.inc()
    return result


def get_subject(state: AppState, subject_id: str) -> SubjectPublic:
    with state.sessions() as session:
        subject = repository.get_subject(session, subject_id)
        counts = repository.face_counts(session, [subject.id])
        return subject_public(subject, counts.get(subject.id, 0))


def list_subjects(
    state: AppState, limit: int, offset: int, name: str | None, after: str | None = None
) -> SubjectList:
    place = None if after is None else page_cursors.read_subject_cursor(after)
    _one_way_of_paging(offset, after)
    with state.sessions() as session:
        # One row past the page says whether another follows.
        rows, total = repository.list_subjects(session, limit + 1, offset, name, place)
        page = rows[:limit]
        items = [subject_public(subject, faces) for subject, faces in page]
        more = len(rows) > limit
        next_after = page_cursors.subject_cursor(page[-1][0]) if more else None
    return SubjectList(items=items, total=total, limit=limit, offset=offset, next_after=next_after)


def update_subject(
    state: AppState, subject_id: str, name: str | None, metadata: dict[str, Any] | None
) -> SubjectPublic:
    with state.sessions() as session, session.begin():
        subject = repository.update_subject(session, subject_id, name=name, metadata=metadata)
        counts = repository.face_counts(session, [subject.id])
        return subject_public(subject, counts.get(subject.id, 0))


def delete_subject(state: AppState, subject_id: str) -> None:
    # Crops live in the faces table, so the cascade removes them with the rows.
    with state.write_lock:
        # Read under the lock a model swap holds: an index read before it could be the
        # old model's, and the new one would keep the deleted faces.
        runtime = state.require_runtime()
        with state.sessions() as session, session.begin():
            face_ids = repository.delete_subject(session, subject_id)
        _remove_from_index(state, runtime, face_ids)
    state.metrics.subjects.dec()
    state.metrics.faces_enrolled.dec(len(face_ids))


def list_faces(
    state: AppState, subject_id: str, limit: int, offset: int, after: str | None = None
) -> FaceList:
    place = 0 if after is None else page_cursors.read_face_cursor(after)
    _one_way_of_paging(offset, after)
    with state.sessions() as session:
        rows, total = repository.list_faces(session, subject_id, limit + 1, offset, place)
        faces = [face_public(face) for face in rows[:limit]]
    next_after = page_cursors.face_cursor(faces[-1].id) if len(rows) > limit else None
    return FaceList(faces=faces, total=total, limit=limit, offset=offset, next_after=next_after)


def _one_way_of_paging(offset: int, after: str | None) -> None:
    if offset and after is not None:
        raise InvalidRequest(
            "Invalid request: offset and after (page with one of them, not both).",
            [problem(["query", "offset"], "not with after", "paging_mixed")],
        )


def delete_face(state: AppState, subject_id: str, face_id: int) -> None:
    with state.write_lock:
        runtime = state.require_runtime()  # under the lock, as in delete_subject
        with state.sessions() as session, session.begin():
            repository.get_subject(session, subject_id)
            repository.delete_face(session, subject_id, face_id)
        _remove_from_index(state, runtime, [face_id])
    state.metrics.faces_enrolled.dec()


def _remove_from_index(state: AppState, runtime: Runtime, face_ids: list[int]) -> None:
    if not face_ids:
        return
    runtime.index.remove(np.asarray(face_ids, dtype=np.int64))
    state.index_dirty = True
    state.metrics.index_size.set(len(runtime.index))

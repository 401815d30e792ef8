"""Subject and face management: DB first, then the index."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.gallery import repository
from app.gallery.orm import Face, Subject
from app.schemas.common import QualityPublic
from app.schemas.subjects import FaceList, FacePublic, SubjectList, SubjectPublic
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


def list_subjects(state: AppState, limit: int, offset: int, name: str | None) -> SubjectList:
    with state.sessions() as session:
        page, total = repository.list_subjects(session, limit, offset, name)
        items = [subject_public(subject, faces) for subject, faces in page]
    return SubjectList(items=items, total=total, limit=limit, offset=offset)


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


def list_faces(state: AppState, subject_id: str, limit: int, offset: int) -> FaceList:
    with state.sessions() as session:
        page, total = repository.list_faces(session, subject_id, limit, offset)
        faces = [face_public(face) for face in page]
    return FaceList(faces=faces, total=total, limit=limit, offset=offset)


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

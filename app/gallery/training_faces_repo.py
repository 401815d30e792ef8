"""Training-set queries: the faces, with their crops, that fine-tuning can load."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session

from app.gallery.orm import Face


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


def _with_crop() -> Any:
    return Face.crop.is_not(None) & Face.crop_landmarks.is_not(None)


def _trainable_subjects() -> Select[str]:
    query = select(Face.subject_id).where(_with_crop()).group_by(Face.subject_id)
    return query.having(func.count() >= 2)


def count_trainable_subjects(s: Session) -> int:
    """Subjects with two or more faces fine-tuning can load: a crop and its landmarks."""
    query = select(func.count()).select_from(_trainable_subjects().subquery())
    return s.scalar(query) or 0


def trainable_faces(s: Session, batch: int = 10_000) -> Result[int, str]:
    """(face id, subject id) of the faces fine-tuning can load at most: those with a crop
    and its landmarks, of subjects with two or more of them. Streamed, in no set order, a
    batch of rows at a time: close the result to stop reading."""
    query = select(Face.id, Face.subject_id).where(
        _with_crop(), Face.subject_id.in_(_trainable_subjects())
    )
    return s.execute(query.execution_options(yield_per=batch))

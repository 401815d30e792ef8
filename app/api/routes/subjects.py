"""Subjects: create, list, read, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import AfterQuery, ClientKey, StateDep
from app.schemas.common import ERROR_RESPONSES, MAX_SQL_INT
from app.schemas.subjects import SubjectCreate, SubjectList, SubjectPublic, SubjectUpdate
from app.services import subjects

router = APIRouter(
    prefix="/v1/subjects", tags=["subjects"], dependencies=[ClientKey], responses=ERROR_RESPONSES
)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_subject(body: SubjectCreate, state: StateDep) -> SubjectPublic:
    return subjects.create_subject(state, body.name, body.metadata)


@router.get("")
def list_subjects(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    name: Annotated[
        str | None,
        Query(
            max_length=255,
            description="Substring; ignores case and accents.",
        ),
    ] = None,
    after: AfterQuery = None,
) -> SubjectList:
    return subjects.list_subjects(state, limit, offset, name, after)


@router.get("/{subject_id}")
def get_subject(subject_id: str, state: StateDep) -> SubjectPublic:
    return subjects.get_subject(state, subject_id)


@router.patch("/{subject_id}")
def update_subject(subject_id: str, body: SubjectUpdate, state: StateDep) -> SubjectPublic:
    return subjects.update_subject(state, subject_id, body.name, body.metadata)


@router.delete("/{subject_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subject(subject_id: str, state: StateDep) -> Response:
    """Delete the subject with its faces, embeddings, stored crops and index entries."""
    subjects.delete_subject(state, subject_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

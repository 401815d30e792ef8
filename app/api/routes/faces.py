"""Enrolled faces of a subject: enrol (multipart), list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Response, UploadFile, status

from app.api.deps import AfterQuery, ClientKey, FacePolicyDep, StateDep, read_upload
from app.errors import InvalidRequest, problem
from app.schemas.common import ERROR_RESPONSES, MAX_SQL_INT
from app.schemas.subjects import FaceList, FacesCreated
from app.services import subjects
from app.services.enrolment import enrol

FACE_PAGE = 1000  # the largest page, as for /v1/subjects

router = APIRouter(
    prefix="/v1/subjects/{subject_id}/faces",
    tags=["faces"],
    dependencies=[ClientKey],
    responses=ERROR_RESPONSES,
)


@router.post("", status_code=status.HTTP_201_CREATED)
async def enrol_faces(
    subject_id: str,
    files: Annotated[list[UploadFile], File(description="One or more images, one face each.")],
    state: StateDep,
    face: FacePolicyDep,
) -> FacesCreated:
    """All-or-nothing: if any file is rejected, nothing is enrolled; every rejection is listed."""
    if len(files) > state.settings.max_files_per_request:
        most = state.settings.max_files_per_request
        raise InvalidRequest(
            f"At most {most} files per request.",
            [problem(["body", "files"], f"{len(files)} files, over {most}", "too_many_files")],
        )
    uploads = [await read_upload(f, state.settings) for f in files]
    return FacesCreated(faces=await enrol(state, subject_id, uploads, face))


@router.get("")
def list_faces(
    subject_id: str,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=FACE_PAGE)] = FACE_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    after: AfterQuery = None,
) -> FaceList:
    """The subject's faces in id order, a page at a time; `total` counts them all, and
    `next_after` continues a subject with more faces than one page holds."""
    # The default is the largest page: clients written when this listed every face keep
    # getting all of them unless a subject has more than a thousand.
    return subjects.list_faces(state, subject_id, limit, offset, after)


@router.delete("/{face_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_face(
    subject_id: str, face_id: Annotated[int, Path(ge=1, le=MAX_SQL_INT)], state: StateDep
) -> Response:
    subjects.delete_face(state, subject_id, face_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

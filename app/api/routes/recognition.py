"""Verify (1:1), identify (1:N) and detect."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from app.api.deps import ClientKey, FacePolicyDep, StateDep, form_or_query, read_upload
from app.schemas.common import ERROR_RESPONSES, Text
from app.schemas.recognition import DetectResult, IdentifyResult, VerifyResult
from app.services import matching

router = APIRouter(
    prefix="/v1", tags=["recognition"], dependencies=[ClientKey], responses=ERROR_RESPONSES
)
DEFAULT_TOP_K = 5
Threshold = Annotated[
    float | None,
    Form(ge=-1.0, le=1.0, allow_inf_nan=False, description="Overrides the default."),
]


@router.post("/verify")
async def verify(
    state: StateDep,
    image: Annotated[UploadFile, File(description="The probe image.")],
    face: FacePolicyDep,
    image2: Annotated[UploadFile | None, File(description="Compare with this image.")] = None,
    subject_id: Annotated[Text | None, Form(description="Compare with this subject.")] = None,
    threshold: Threshold = None,
) -> VerifyResult:
    """Is the probe's face the enrolled subject (or the face in image2)?"""
    uploads = [await read_upload(image, state.settings)]
    if image2 is not None:
        uploads.append(await read_upload(image2, state.settings))
    return await matching.verify(state, uploads, subject_id, face, threshold)


@router.post("/identify")
async def identify(
    state: StateDep,
    image: Annotated[UploadFile, File()],
    top_k: Annotated[int | None, Form(ge=1, le=100, description="Candidates per face (5).")] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k", ge=1, le=100)] = None,
    max_faces: Annotated[
        int | None, Form(ge=1, description="At most this many faces, the largest (FACE_MAX_FACES).")
    ] = None,
    threshold: Threshold = None,
) -> IdentifyResult:
    """Top-k enrolled subjects for every face in the image; `match` is null when unknown."""
    upload = await read_upload(image, state.settings)
    k = form_or_query("top_k", top_k, top_k_query) or DEFAULT_TOP_K
    return await matching.identify(state, upload, k, max_faces, threshold)


@router.post("/detect")
async def detect(
    state: StateDep,
    image: Annotated[UploadFile, File()],
    max_faces: Annotated[
        int | None,
        Form(ge=1, description="At most this many faces, the largest (FACE_MAX_DETECT_FACES)."),
    ] = None,
) -> DetectResult:
    """Every face (the largest, up to max_faces) with its box, 5 landmarks, probability and
    quality report."""
    return await matching.detect(state, await read_upload(image, state.settings), max_faces)

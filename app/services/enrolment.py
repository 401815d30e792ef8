"""Enrolling faces: every file is checked first, then all are stored or none (all-or-nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.config import FacePolicy, Settings
from app.errors import FaceServiceError, InvalidRequest, NotReady, problem
from app.gallery import repository
from app.pipeline.analyzer import AnalyzedFace, FacePipeline, StoredCrop
from app.pipeline.types import AlignTemplate, FloatArray
from app.schemas.subjects import FacePublic
from app.services.enrolment_refusals import combined, detached, refuse_duplicates
from app.services.probes import Upload, choose_face, load_image, require_quality, sha256_hex
from app.services.recognition import points_of
from app.services.subjects import face_public, get_subject
from app.state import AppState, Runtime


@dataclass(frozen=True)
class PreparedFace:
    upload: Upload
    face: AnalyzedFace
    crop: StoredCrop | None
    sha256: str


def _quality_dict(face: AnalyzedFace) -> dict[str, Any]:
    q = face.quality
    return {
        "passed": q.passed,
        "face_size": round(q.face_size, 2),
        "probability": round(q.probability, 5),
        "blur": round(q.blur, 2),
        "reasons": list(q.reasons),
    }


def _prepare(
    pipeline: FacePipeline,
    settings: Settings,
    upload: Upload,
    policy: FacePolicy | None,
    sha256: str,
) -> PreparedFace:
    image = load_image(settings, upload)
    face = choose_face(pipeline, image, policy)
    require_quality(face, "enrol")
    crop = pipeline.stored_crop(image, face.face) if settings.store_crops else None
    return PreparedFace(upload=upload, face=face, crop=crop, sha256=sha256)


@dataclass(frozen=True)
class Enrolment:
    """Checked faces and their vectors, with the model version that computed them."""

    faces: list[PreparedFace]
    vectors: FloatArray
    model_version: str
    template: AlignTemplate


def prepare_enrolment(
    pipeline: FacePipeline, settings: Settings, uploads: list[Upload], policy: FacePolicy | None
) -> Enrolment:
    """Blocking: check every upload, and raise one error that lists every rejected file."""
    digests = _refuse_repeats(uploads)
    prepared: list[PreparedFace] = []
    rejected: list[tuple[int, Upload, FaceServiceError]] = []
    for position, (upload, digest) in enumerate(zip(uploads, digests, strict=True)):
        try:
            prepared.append(_prepare(pipeline, settings, upload, policy, digest))
        except FaceServiceError as error:
            rejected.append((position, upload, detached(error)))
    if rejected:
        raise combined(rejected, len(uploads))
    vectors = pipeline.embed([p.face for p in prepared])
    return Enrolment(prepared, vectors, pipeline.embedder.version, pipeline.embedder.template)


def _refuse_repeats(uploads: list[Upload]) -> list[str]:
    """Each upload's sha256; one request may not carry the same image twice (found before
    any inference)."""
    first_at: dict[str, int] = {}
    for position, upload in enumerate(uploads):
        digest = sha256_hex(upload.data)
        if digest in first_at:
            earlier = first_at[digest]
            raise InvalidRequest(
                f"Files {earlier} and {position} of this request are the same image "
                f"({uploads[earlier].filename}, {upload.filename}); nothing was enrolled.",
                [
                    problem(
                        ["body", "files", position],
                        f"the same image as file {earlier} (sha256 {digest})",
                        "repeated_image",
                    )
                ],
            )
        first_at[digest] = position
    return list(first_at)


def _current_vectors(runtime: Runtime, enrolment: Enrolment) -> FloatArray:
    """Vectors from the model serving now: a model swap may have happened since embedding."""
    if enrolment.model_version == runtime.model_version:
        return enrolment.vectors
    template = runtime.pipeline.embedder.template
    if template.size != enrolment.template.size or not np.array_equal(
        template.points, enrolment.template.points
    ):
        raise NotReady("The model changed while this request was processed; please retry.")
    return runtime.pipeline.embed([p.face for p in enrolment.faces])


def store_enrolment(state: AppState, subject_id: str, enrolment: Enrolment) -> list[FacePublic]:
    """DB first (the acknowledgement point), then the index, under the write lock."""
    with state.write_lock:
        runtime = state.serving_runtime()
        vectors = _current_vectors(runtime, enrolment)
        prepared = enrolment.faces
        with state.sessions() as session, session.begin():
            repository.get_subject(session, subject_id, lock=True)
            refuse_duplicates(session, subject_id, prepared)
            faces = [
                repository.add_face(
                    session,
                    subject_id,
                    box=[round(float(v), 2) for v in item.face.face.box],
                    landmarks=points_of(item.face.face.landmarks),
                    quality=_quality_dict(item.face),
                    image_sha256=item.sha256,
                    crop=item.crop.png if item.crop else None,
                    crop_landmarks=points_of(item.crop.landmarks) if item.crop else None,
                    model=runtime.model_version,
                    vector=vectors[i],
                )
                for i, item in enumerate(prepared)
            ]
            result = [face_public(face) for face in faces]
        ids = np.asarray([face.id for face in result], dtype=np.int64)
        runtime.index.add(ids, vectors)
        state.index_dirty = True
    state.metrics.faces_enrolled.inc(len(result))
    state.metrics.index_size.set(len(runtime.index))
    return result


async def enrol(
    state: AppState, subject_id: str, uploads: list[Upload], policy: FacePolicy | None
) -> list[FacePublic]:
    """Check the subject, grade and embed every upload off the event loop, then store."""
    await run_in_threadpool(get_subject, state, subject_id)
    runtime = state.serving_runtime()
    enrolment = await state.infer(
        prepare_enrolment,
        runtime.pipeline,
        state.settings,
        uploads,
        policy,
        images=[upload.data for upload in uploads],
        one_at_a_time=True,  # each upload leaves only its face crop behind
    )
    return await run_in_threadpool(store_enrolment, state, subject_id, enrolment)

"""Enrolling faces: every file is checked first, then all are stored or none (all-or-nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.config import FacePolicy, Settings
from app.errors import DuplicateImage, FaceServiceError, LowQuality
from app.gallery import repository
from app.pipeline.analyzer import AnalyzedFace, FacePipeline, StoredCrop
from app.pipeline.types import FloatArray
from app.schemas.subjects import FacePublic
from app.services.probes import Upload, choose_face, load_image, sha256_hex
from app.services.recognition import points_of
from app.services.subjects import face_public
from app.state import AppState


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
    pipeline: FacePipeline, settings: Settings, upload: Upload, policy: FacePolicy | None
) -> PreparedFace:
    image = load_image(settings, upload)
    face = choose_face(pipeline, image, policy)
    if not face.quality.passed:
        raise LowQuality(
            "The face is not good enough to enrol: " + "; ".join(face.quality.reasons),
            details={"reasons": face.quality.reasons},
        )
    crop = pipeline.stored_crop(image, face.face) if settings.store_crops else None
    return PreparedFace(upload=upload, face=face, crop=crop, sha256=sha256_hex(upload.data))


def prepare_enrolment(
    pipeline: FacePipeline, settings: Settings, uploads: list[Upload], policy: FacePolicy | None
) -> tuple[list[PreparedFace], FloatArray]:
    """Blocking: check every upload, and raise one error that lists every rejected file."""
    prepared: list[PreparedFace] = []
    rejected: list[tuple[int, Upload, FaceServiceError]] = []
    for position, upload in enumerate(uploads):
        try:
            prepared.append(_prepare(pipeline, settings, upload, policy))
        except FaceServiceError as error:
            rejected.append((position, upload, error))
    if rejected:
        first = rejected[0][2]
        files = [
            {"index": i, "filename": up.filename, "code": err.code, "message": err.message}
            | ({"reasons": err.details["reasons"]} if isinstance(err, LowQuality) else {})
            for i, up, err in rejected
        ]
        prefix = (
            ""
            if len(uploads) == 1
            else f"{len(rejected)} of {len(uploads)} files rejected; nothing was enrolled. First: "
        )
        raise type(first)(prefix + first.message, details={"files": files})
    return prepared, pipeline.embed([p.face for p in prepared])


def store_enrolment(
    state: AppState, subject_id: str, prepared: list[PreparedFace], vectors: FloatArray
) -> list[FacePublic]:
    """DB first (the acknowledgement point), then the index, under the write lock."""
    runtime = state.require_runtime()
    model = runtime.model_version
    with state.write_lock:
        with state.sessions() as session, session.begin():
            repository.get_subject(session, subject_id)
            seen: set[str] = set()
            for item in prepared:
                if item.sha256 in seen or repository.subject_has_image(
                    session, subject_id, item.sha256
                ):
                    raise DuplicateImage(
                        f"{item.upload.filename} is already enrolled for this subject.",
                        details={"filename": item.upload.filename, "image_sha256": item.sha256},
                    )
                seen.add(item.sha256)
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
                    model=model,
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

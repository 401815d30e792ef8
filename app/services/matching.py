"""Request flows for verify, identify and detect: inference on the pool, DB in a thread."""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.config import FacePolicy
from app.errors import InvalidRequest, problem
from app.schemas.recognition import DetectedFacePublic, DetectResult, IdentifyResult, VerifyResult
from app.services.probes import Upload, analyze_all, detect_all, embed_probes
from app.services.recognition import (
    box_of,
    identify_faces,
    points_of,
    quality_public,
    subject_gallery,
    verify_against_subject,
    verify_images,
)
from app.state import AppState


async def verify(
    state: AppState,
    uploads: list[Upload],
    subject_id: str | None,
    policy: FacePolicy | None,
    threshold: float | None,
) -> VerifyResult:
    if (subject_id is None) == (len(uploads) == 1):
        raise InvalidRequest(
            "Pass either subject_id or image2, not both and not neither.",
            [problem(["body"], "either subject_id or image2", "subject_id_or_image2")],
        )
    runtime = state.serving_runtime()
    gallery = None
    if subject_id is not None:
        # Unknown and empty subjects fail here, before any inference is spent on them.
        gallery = await run_in_threadpool(subject_gallery, state, runtime, subject_id)
    probes = await state.infer(
        embed_probes,
        runtime.pipeline,
        state.settings,
        uploads,
        policy or "prominent",
        ("image", "image2"),
        images=[upload.data for upload in uploads],
    )
    if subject_id is not None and gallery is not None:
        probe = probes[0]
        return verify_against_subject(
            runtime, subject_id, gallery, probe.face, probe.vector, threshold
        )
    vectors = np.stack([p.vector for p in probes])
    return verify_images(runtime, probes[0].face, probes[1].face, vectors, threshold)


async def identify(
    state: AppState, upload: Upload, top_k: int, max_faces: int | None, threshold: float | None
) -> IdentifyResult:
    runtime = state.serving_runtime()
    limit = min(max_faces or state.settings.max_faces, state.settings.max_faces)
    graded, vectors = await state.infer(
        analyze_all, runtime.pipeline, state.settings, upload, limit, images=[upload.data]
    )
    # Read once: an admin calibration may replace runtime.thresholds while this request runs.
    active = runtime.decision_thresholds()
    used = active.identify if threshold is None else threshold
    results = await run_in_threadpool(
        identify_faces, state, runtime, graded.faces, vectors, top_k, used
    )
    far = active.identify_far if threshold is None else None
    return IdentifyResult(
        faces=results, faces_found=graded.found, threshold=used, estimated_far=far
    )


async def detect(state: AppState, upload: Upload, max_faces: int | None) -> DetectResult:
    runtime = state.require_runtime()
    ceiling = state.settings.max_detect_faces
    limit = min(max_faces or ceiling, ceiling)
    graded = await state.infer(
        detect_all, runtime.pipeline, state.settings, upload, limit, images=[upload.data]
    )
    return DetectResult(
        faces=[
            DetectedFacePublic(
                box=box_of(face),
                probability=round(face.face.probability, 5),
                landmarks=points_of(face.face.landmarks),
                quality=quality_public(face),
            )
            for face in graded.faces
        ],
        faces_found=graded.found,
        width=int(graded.shape[1]),
        height=int(graded.shape[0]),
    )

"""Verify (1:1) and identify (1:N) decisions over embedded probes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.errors import SubjectHasNoFaces
from app.gallery import embeddings_repo, repository
from app.pipeline.analyzer import AnalyzedFace
from app.pipeline.types import FloatArray
from app.schemas.common import QualityPublic
from app.schemas.recognition import Candidate, IdentifiedFace, VerifyResult
from app.services.far_bounds import far_over, round_up
from app.state import AppState, Runtime


def quality_public(face: AnalyzedFace) -> QualityPublic:
    q = face.quality
    return QualityPublic(
        passed=q.passed,
        face_size=round(q.face_size, 2),
        probability=round(q.probability, 5),
        blur=round(q.blur, 2),
        reasons=list(q.reasons),
    )


def box_of(face: AnalyzedFace) -> list[float]:
    return [round(float(v), 2) for v in face.face.box]


def points_of(points: FloatArray) -> list[list[float]]:
    # float64 before rounding, so JSON carries 2 decimals rather than float32 noise.
    rounded: list[list[float]] = np.asarray(points, dtype=np.float64).round(2).tolist()
    return rounded


def subject_gallery(state: AppState, runtime: Runtime, subject_id: str) -> FloatArray:
    """The subject's enrolled vectors under `runtime`'s model, read before the probe is
    embedded, so that an unknown or empty subject costs no inference.

    `runtime` must be the one that then embeds the probe, so a model swap in between never
    compares vectors of two models.
    """
    with state.sessions() as session:
        gallery = embeddings_repo.subject_vectors(session, subject_id, runtime.model_version)
        if len(gallery) == 0:
            # One query on the usual path; only an empty answer asks whether it exists.
            repository.get_subject(session, subject_id)
            raise SubjectHasNoFaces("The subject has no enrolled faces to compare with.")
    return gallery


def verify_against_subject(
    runtime: Runtime,
    subject_id: str,
    gallery: FloatArray,
    face: AnalyzedFace,
    vector: FloatArray,
    threshold: float | None,
) -> VerifyResult:
    """Similarity to a subject is the best cosine over its enrolled faces (`gallery`), so a
    stranger has as many chances as the subject has faces: the FAR stated is over them."""
    similarity = float(np.max(gallery @ vector))
    return _verdict(
        runtime, similarity, threshold, face, subject_id=subject_id, comparisons=len(gallery)
    )


def verify_images(
    runtime: Runtime,
    first: AnalyzedFace,
    second: AnalyzedFace,
    vectors: FloatArray,
    threshold: float | None,
) -> VerifyResult:
    similarity = float(vectors[0] @ vectors[1])
    result = _verdict(runtime, similarity, threshold, first, subject_id=None)
    return result.model_copy(update={"box2": box_of(second), "quality2": quality_public(second)})


def _verdict(
    runtime: Runtime,
    similarity: float,
    threshold: float | None,
    face: AnalyzedFace,
    subject_id: str | None,
    comparisons: int = 1,
) -> VerifyResult:
    active = runtime.decision_thresholds()
    used = active.verify if threshold is None else threshold
    far = None
    if threshold is None and active.verify_far is not None:
        far = round_up(far_over(active.verify_far, comparisons))
    return VerifyResult(
        verified=similarity >= used,
        similarity=round(similarity, 6),
        threshold=used,
        estimated_far=far,
        subject_id=subject_id,
        box=box_of(face),
        quality=quality_public(face),
    )


def identify_faces(
    state: AppState,
    runtime: Runtime,
    faces: Sequence[AnalyzedFace],
    vectors: FloatArray,
    top_k: int,
    threshold: float,
) -> list[IdentifiedFace]:
    if not faces:
        return []
    per_face = _search_subjects(state, runtime, vectors, top_k)
    refuse = state.settings.probe_quality == "refuse"
    results = []
    for face, ranked in zip(faces, per_face, strict=True):
        if refuse and not face.quality.passed:
            ranked = []  # FACE_PROBE_QUALITY=refuse: no one is matched to a failing face
        results.append(
            IdentifiedFace(
                box=box_of(face),
                quality=quality_public(face),
                candidates=[candidate for _, candidate in ranked],
                match=best_match(ranked, threshold),
            )
        )
    return results


def best_match(ranked: Sequence[tuple[float, Candidate]], threshold: float) -> Candidate | None:
    """The first candidate if its score reaches `threshold`. Decided on the score as
    searched: candidates show it rounded, and a rounded score could reach a threshold
    calibrated to stay just above it."""
    if ranked and ranked[0][0] >= threshold:
        return ranked[0][1]
    return None


def _search_subjects(
    state: AppState, runtime: Runtime, vectors: FloatArray, top_k: int
) -> list[list[tuple[float, Candidate]]]:
    """Top-k distinct subjects per probe, each with its best score unrounded, widening the
    face search until k subjects appear."""
    total = len(runtime.index)
    k = min(total, top_k * 4)
    while True:
        scores, ids = (
            runtime.index.search(vectors, k, state.settings.index_ef_search)
            if k
            else _empty(len(vectors))
        )
        with state.sessions() as session:
            owners = repository.subjects_for_faces(
                session, [int(i) for i in np.unique(ids) if i >= 0]
            )
        ranked = [
            _rank(s_row, i_row, owners, top_k) for s_row, i_row in zip(scores, ids, strict=True)
        ]
        if k >= total or all(len(r) >= top_k for r in ranked):
            return ranked
        k = min(total, k * 4)


def _empty(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((rows, 0), np.float32), np.zeros((rows, 0), np.int64)


def _rank(
    scores: np.ndarray, ids: np.ndarray, owners: dict[int, tuple[str, str]], top_k: int
) -> list[tuple[float, Candidate]]:
    best: dict[str, tuple[float, Candidate]] = {}
    for score, face_id in zip(scores, ids, strict=True):
        owner = owners.get(int(face_id))
        if owner is None:
            continue  # deleted after the search started, or a -1 slot
        subject_id, name = owner
        if subject_id not in best:  # results are sorted, so the first hit is the subject's best
            best[subject_id] = (
                float(score),
                Candidate(subject_id=subject_id, name=name, similarity=round(float(score), 6)),
            )
        if len(best) == top_k:
            break
    return list(best.values())

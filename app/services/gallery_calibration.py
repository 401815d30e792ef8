"""Calibrating the serving model's thresholds on the faces already enrolled in the gallery."""

from __future__ import annotations

import logging

import numpy as np

from app.errors import CalibrationNotFound, InsufficientCalibrationData, ModelError
from app.evaluation.clustered_rate import design_effect
from app.evaluation.far_calibration import SCORE_NOISE, calibrate_far
from app.evaluation.gallery_scores import score_gallery
from app.evaluation.identification import no_looser_than_verify, open_set_threshold
from app.gallery import embeddings_repo, repository
from app.schemas.calibration import CalibrateParams, CalibrationPublic, CalibrationResult
from app.services.calibration import METHOD_GALLERY_ADJUSTED, Calibration, CalibrationStore
from app.services.calibration_import import set_aside
from app.services.calibration_reliability import (
    far_checks,
    gallery_refusal,
    public,
    reliability_notes,
)
from app.services.calibration_warnings import calibration_warnings, degenerate_refusal
from app.services.far_bounds import accepted
from app.services.gallery_calibration_result import calibration_result
from app.services.thresholds import refresh_thresholds
from app.state import AppState

log = logging.getLogger(__name__)

# Fixed, so the same gallery always samples the same pairs and gives the same thresholds.
SAMPLE_SEED = 0
DEGENERATE_TODO = (
    "delete the faces enrolled under more than one subject (the same photo or person), "
    'ask for a larger FAR, or send "force": true to serve it anyway'
)


def calibrate_on_gallery(state: AppState, params: CalibrateParams) -> CalibrationResult:
    """Calibrate on the active model's stored embeddings, store it, and serve it at once.
    One whose FARs the gallery cannot measure, or with a degenerate threshold, is refused
    unless `params.force`: its thresholds would serve as if they held their targets."""
    version = state.serving_runtime().model_version
    vectors, subjects = gallery_embeddings(state, version)
    scores = score_gallery(vectors, subjects, seed=SAMPLE_SEED)
    if scores.impostor.size == 0:
        raise InsufficientCalibrationData(
            "Calibration needs enrolled faces of at least 2 subjects under the active model.",
            {"model_version": version, "subjects": scores.subjects, "faces": scores.faces},
        )
    identify_far = params.identify_target_far or params.target_far
    verify = calibrate_far(scores.impostor, params.target_far, SCORE_NOISE)
    identify = no_looser_than_verify(
        open_set_threshold(scores.per_subject, scores.subjects, identify_far, SCORE_NOISE),
        identify_far,
        verify.threshold,
        params.target_far,
    )
    calibration = Calibration(
        model_version=version,
        verify_threshold=verify.threshold,
        verify_far=params.target_far,
        identify_threshold=identify,
        identify_far=identify_far,
        gallery_size=scores.subjects,
        method=METHOD_GALLERY_ADJUSTED,
        source="gallery",
        impostors=int(scores.impostor.size),
        identify_scores=max(1, int(scores.per_subject.size)),
        verify_accepts=accepted(scores.impostor, verify.threshold, SCORE_NOISE),
        # No per-subject score at all (one subject): nothing could pass.
        identify_accepts=(
            accepted(scores.per_subject, identify, SCORE_NOISE) if scores.per_subject.size else 0
        ),
        verify_design_effect=design_effect(
            scores.impostor, scores.impostor_subjects, verify.threshold, SCORE_NOISE
        ),
        identify_design_effect=(
            design_effect(scores.per_subject, scores.per_subject_subjects, identify, SCORE_NOISE)
            if scores.per_subject.size
            else None
        ),
    )
    checks = far_checks(calibration)
    warned = calibration_warnings(calibration, scores.impostor, scores.per_subject, scores.genuine)
    calibration = calibration.model_copy(update={"warnings": warned})
    if not params.force and warned:  # first: more subjects or a larger FAR may not help
        raise degenerate_refusal(calibration, checks, DEGENERATE_TODO)
    if not params.force and not all(check.reliable for check in checks):
        raise gallery_refusal(calibration, checks)
    notes = reliability_notes(checks)
    if notes:
        notes.append("Stored anyway, as forced: these FARs are targets, not measured.")
    if warned:
        notes.append("Stored anyway, as forced, with its warnings: a degenerate threshold serves.")
    with state.write_lock:  # a model swap replaces the runtime under this lock
        CalibrationStore(state.sessions).save(calibration)
        aside = set_aside(state.settings.data_dir)
        if aside is not None:
            log.warning(
                "an older release's calibration file is unreadable; set it aside as %s", aside
            )
            notes.append(
                f"The unreadable calibration file of an older release was set aside as "
                f"{aside.name}; calibrations of other models in it must be redone."
            )
        refreshed = refresh_thresholds(state, version)
    serving = refreshed or state.require_runtime()
    return calibration_result(
        state, calibration, scores, verify, refreshed is not None, serving.thresholds, notes
    )


def stored_calibration(state: AppState) -> CalibrationPublic:
    """The stored calibration of the serving model version; ModelError (503) while this
    process cannot serve the active one, whose calibration it would not be."""
    version = state.serving_runtime().model_version
    calibration = CalibrationStore(state.sessions).load(version)
    if calibration is None:
        raise CalibrationNotFound(
            f"No calibration is stored for {version}.", {"model_version": version}
        )
    return public(calibration)


def delete_calibration(state: AppState) -> CalibrationPublic:
    """Forget the serving model's stored calibration and serve its default thresholds at
    once; the calibration removed. Other models' calibrations stay.

    When it is this process's unreadable calibration.json of an older release that pauses
    decisions, only that file is set aside: the row in the database, which every process
    sharing it serves, stays."""
    version = state.serving_runtime().model_version
    with state.write_lock:
        aside = set_aside(state.settings.data_dir)
        if aside is not None:
            log.warning("an older release's unreadable calibration file is now %s", aside)
            refresh_thresholds(state, version)
            raise CalibrationNotFound(
                f"This process's calibration file of an older release could not be read, so "
                f"it was set aside as {aside.name}; the calibration stored in the database, "
                "if any, serves (delete again to remove it).",
                {"model_version": version, "set_aside": aside.name},
            )
        try:
            removed = CalibrationStore(state.sessions).delete(version)
        except ModelError as error:  # unreadable, and removed all the same
            log.warning("%s; deleted", error.message)
            refresh_thresholds(state, version)
            raise CalibrationNotFound(
                "The stored calibration could not be read, so it was deleted; the default "
                "thresholds serve.",
                {"model_version": version, "unreadable": error.message},
            ) from error
        if removed is not None:
            refresh_thresholds(state, version)
    if removed is None:
        raise CalibrationNotFound(
            f"No calibration is stored for {version}.", {"model_version": version}
        )
    return public(removed)


def gallery_embeddings(state: AppState, version: str) -> tuple[np.ndarray, list[str]]:
    """Every stored `version` vector of a face that still exists, and its subject id."""
    with state.sessions() as session:
        batches = list(embeddings_repo.iter_vectors(session, version))
        ids = [int(i) for face_ids, _ in batches for i in face_ids]
        owners = repository.subjects_for_faces(session, ids)
    if not batches:
        return np.empty((0, embeddings_repo.EMBEDDING_DIM), dtype=np.float32), []
    vectors = np.concatenate([matrix for _, matrix in batches])
    keep = [row for row, face_id in enumerate(ids) if face_id in owners]
    return vectors[keep], [owners[ids[row]][0] for row in keep]

"""Domain errors and their single JSON error shape."""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypedDict


class FaceServiceError(Exception):
    """Base of every error the service reports to a client."""

    code: ClassVar[str] = "internal_error"
    status_code: ClassVar[int] = 500

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Problem(TypedDict):
    """One thing wrong with a request, as a request that fails validation reports it: where
    (["body", "files", 2], ["query", "after"], or ["body"] for a rule over several fields),
    why, and a stable type."""

    loc: list[str | int]
    msg: str
    type: str


def problem(loc: list[str | int], msg: str, type_: str) -> Problem:
    return {"loc": loc, "msg": msg, "type": type_}


class InvalidRequest(FaceServiceError):
    """Its details are always a list of Problems, whatever raised it, so that a client reads
    every invalid_request one way (they were a dict or null for some before 2026-11-29);
    without any, one about the whole body, saying `message`. Built as every error is, so
    that copying or pickling one works (a caller that rebuilds it with other details must
    pass Problems)."""

    code, status_code = "invalid_request", 422

    def __init__(self, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message, details or [problem(["body"], message, "invalid_request")])


class UnsupportedMediaType(FaceServiceError):
    code, status_code = "unsupported_media_type", 415


class InvalidImage(FaceServiceError):
    code, status_code = "invalid_image", 422


class ImageTooLarge(FaceServiceError):
    code, status_code = "image_too_large", 422


class PayloadTooLarge(FaceServiceError):
    code, status_code = "payload_too_large", 413


class NoFace(FaceServiceError):
    code, status_code = "no_face", 422


class MultipleFaces(FaceServiceError):
    code, status_code = "multiple_faces", 422


class LowQuality(FaceServiceError):
    code, status_code = "low_quality", 422


class SubjectNotFound(FaceServiceError):
    code, status_code = "subject_not_found", 404


class FaceNotFound(FaceServiceError):
    code, status_code = "face_not_found", 404


class NotFound(FaceServiceError):
    code, status_code = "not_found", 404


class Conflict(FaceServiceError):
    code, status_code = "conflict", 409


class Unauthorized(FaceServiceError):
    code, status_code = "unauthorized", 401


class Forbidden(FaceServiceError):
    code, status_code = "forbidden", 403


class NotReady(FaceServiceError):
    code, status_code = "not_ready", 503


class DatabaseUnavailable(FaceServiceError):
    code, status_code = "database_unavailable", 503


class ModelError(FaceServiceError):
    """Weights missing, unreadable or failing their checksum."""

    code, status_code = "model_unavailable", 503


class ChecksumMismatch(ModelError):
    code = "checksum_mismatch"


class SubjectHasNoFaces(FaceServiceError):
    code, status_code = "subject_has_no_faces", 422


class DuplicateImage(FaceServiceError):
    code, status_code = "duplicate_image", 409


class JobRunning(FaceServiceError):
    """A fine-tuning job is already queued or running; one runs at a time."""

    code, status_code = "job_running", 409


class JobNotFound(FaceServiceError):
    code, status_code = "job_not_found", 404


class JobFinished(FaceServiceError):
    code, status_code = "job_finished", 409


class ModelNotFound(FaceServiceError):
    code, status_code = "model_not_found", 404


class ModelInUse(FaceServiceError):
    """A model version something still needs (serving, a job, a lineage) can't be deleted."""

    code, status_code = "model_in_use", 409


class InsufficientTrainingData(FaceServiceError):
    code, status_code = "insufficient_training_data", 422


class InsufficientCalibrationData(FaceServiceError):
    """Too few subjects with faces to score a single impostor pair."""

    code, status_code = "insufficient_calibration_data", 422


class CalibrationUnreliable(FaceServiceError):
    """Too few impostor scores to measure a target FAR: the threshold is not served unforced."""

    code, status_code = "calibration_unreliable", 422


class CalibrationDegenerate(FaceServiceError):
    """A threshold that accepts nobody, or far beyond its FAR: not served unforced."""

    code, status_code = "calibration_degenerate", 422


class CalibrationNotFound(FaceServiceError):
    code, status_code = "calibration_not_found", 404


class RateLimited(FaceServiceError):
    """Over FACE_RATE_LIMIT, or FACE_AUTH_FAILURE_LIMIT for an address guessing keys: the
    answer's Retry-After says when a request may run."""

    code, status_code = "rate_limited", 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, {"retry_after_s": round(retry_after_s, 3)})
        # Whole seconds, rounded up (RFC 9110 10.2.3): earlier would be refused again.
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}

"""Whether a calibrated threshold is degenerate: it accepts nobody, or far more than its FAR."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import CalibrationDegenerate
from app.evaluation.far_calibration import SCORE_MARGIN, SCORE_NOISE
from app.services.calibration import Calibration
from app.services.calibration_reliability import FarCheck, far_checks
from app.services.far_bounds import accepted

# A measured FAR up to twice its target is sampling and ties; beyond it, scores that pass
# any threshold (the same photo under two names) are letting impostors through.
FAR_EXCESS = 2.0
# calibrate_far never places a threshold above 1.0, the top of the cosine scale, and one
# this close to it is only reached by the very same photo.
CEILING = 1.0 - SCORE_MARGIN
# Genuine scores needed before a threshold above all of them counts against it: with one or
# two, a single hard pair (a profile, an old photo) below a strict threshold is ordinary.
MIN_GENUINE_SCORES = 5


def threshold_warnings(
    name: str,
    threshold: float,
    impostor: npt.ArrayLike,
    genuine: npt.ArrayLike,
    target: float,
) -> list[str]:
    """Sentences on what makes `threshold` unfit to serve, none when nothing does: it sits
    at the top of the scale, above every one of at least MIN_GENUINE_SCORES genuine scores
    (so `name` accepts nobody), or lets through more than FAR_EXCESS times `target`, the FAR
    per impostor score."""
    impostors = np.asarray(impostor, dtype=np.float64).ravel()
    genuines = np.asarray(genuine, dtype=np.float64).ravel()
    found = []
    if threshold >= CEILING:
        found.append(
            f"{name}: threshold {threshold:.4f} is the top of the cosine scale, which only an "
            f"identical photo reaches; {accepted(impostors, CEILING - 2 * SCORE_NOISE)} "
            f"impostor scores of {CEILING - 2 * SCORE_NOISE:.3f} or more (one photo or person "
            "labelled as two people) pushed it there."
        )
    if genuines.size >= MIN_GENUINE_SCORES and accepted(genuines, threshold) == 0:
        found.append(
            f"{name}: threshold {threshold:.4f} is above all {genuines.size} genuine scores "
            f"(the highest {genuines.max():.4f}), so it accepts no genuine match."
        )
    passed = accepted(impostors, threshold)
    if impostors.size and passed / impostors.size > FAR_EXCESS * target:
        found.append(
            f"{name}: {passed} of {impostors.size} impostor scores ({passed / impostors.size:.3g})"
            f" pass it, over {FAR_EXCESS:g}x the {target:.3g} per score its target allows."
        )
    return found


def calibration_warnings(
    calibration: Calibration,
    verify_scores: npt.ArrayLike,
    identify_scores: npt.ArrayLike,
    genuine: npt.ArrayLike,
) -> tuple[str, ...]:
    """`threshold_warnings` for both thresholds, each against the scores it was set on."""
    verify, identify = far_checks(calibration)
    return (
        *threshold_warnings(
            "verify", calibration.verify_threshold, verify_scores, genuine, verify.per_score
        ),
        *threshold_warnings(
            "identify", calibration.identify_threshold, identify_scores, genuine, identify.per_score
        ),
    )


def genuine_reject_rate(genuine: npt.ArrayLike, threshold: float) -> float | None:
    """The share of genuine scores below `threshold`; None without any."""
    scores = np.asarray(genuine, dtype=np.float64).ravel()
    return float(np.mean(scores < threshold)) if scores.size else None


def degenerate_refusal(
    calibration: Calibration, checks: tuple[FarCheck, ...], todo: str
) -> CalibrationDegenerate:
    """The error a calibration with warnings gets unless forced; `todo` says what to do."""
    message = (
        f"Not stored: its thresholds are degenerate. {' '.join(calibration.warnings)} "
        f"The thresholds serving now are unchanged. To calibrate, {todo}."
    )
    details: dict[str, Any] = {
        "model_version": calibration.model_version,
        "warnings": list(calibration.warnings),
    }
    details.update({check.name: check.details() for check in checks})
    return CalibrationDegenerate(message, details)

"""The answer to a gallery calibration: what it measured, stored and now serves, with notes."""

from __future__ import annotations

from app.evaluation.far_calibration import FarCalibration
from app.evaluation.gallery_scores import GalleryScores
from app.evaluation.identification import per_comparison_far
from app.schemas.calibration import CalibrationResult
from app.schemas.info import ThresholdsPublic
from app.services.calibration import Calibration
from app.services.calibration_reliability import public
from app.services.calibration_warnings import genuine_reject_rate
from app.services.far_bounds import stated_identify_far, stated_verify_far
from app.state import AppState, Thresholds


def calibration_result(
    state: AppState,
    calibration: Calibration,
    scores: GalleryScores,
    verify: FarCalibration,
    refreshed: bool,
    active: Thresholds,
    notes: list[str],
) -> CalibrationResult:
    """The response for `calibration`, stored (serving now if `refreshed`) from `scores`;
    `notes` so far, to which what the scores and settings add is appended."""
    gallery = calibration.gallery_size
    per_comparison = per_comparison_far(calibration.identify_far, gallery)
    stranger_far = stated_identify_far(calibration, gallery)
    verify_far = stated_verify_far(calibration)
    for name, stated, target in (
        ("verify", verify_far, calibration.verify_far),
        ("identify", stranger_far, calibration.identify_far),
    ):
        if stated > 2 * target:  # reliable by the count of scores, not by what they vouch for
            notes.append(
                f"Responses will state a {name} FAR of {stated:.3g}, over twice the target "
                f"{target:.3g}: the scores of {scores.subjects} subjects cannot vouch for it."
            )
    # Unless the highest is 1.0 (a duplicate photo), which no threshold can sit above.
    if verify.below_resolution and not calibration.verify_accepts:
        notes.append("No impostor pair may pass: verify sits just above the highest one.")
    if per_comparison * scores.per_subject.size < 1 and not calibration.identify_accepts:
        notes.append("No identify score may pass: identify sits just above the highest one.")
    if scores.impostor.size < scores.impostor_total:
        notes.append(
            f"Scored a fixed sample of {scores.impostor.size} of "
            f"{scores.impostor_total} impostor pairs."
        )
    if not refreshed:
        notes.append(
            f"Another model now serves; this applies when {calibration.model_version} does."
        )
    for name in ("verify", "identify"):
        if getattr(state.settings, f"{name}_threshold") is not None:
            notes.append(
                f"FACE_{name.upper()}_THRESHOLD overrides the calibrated {name} threshold."
            )
    genuine = scores.genuine
    shown = public(calibration)
    return CalibrationResult(
        calibration=shown,
        subjects=scores.subjects,
        faces=scores.faces,
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(scores.impostor.size),
        impostor_pairs_total=scores.impostor_total,
        identify_scores=int(scores.per_subject.size),
        verify_far_measured=verify.far_actual,
        verify_frr_measured=genuine_reject_rate(genuine, verify.threshold),
        identify_frr_measured=genuine_reject_rate(genuine, calibration.identify_threshold),
        identify_per_comparison_far=per_comparison,
        identify_far_estimated=stranger_far,
        reliable=shown.reliable,
        warnings=shown.warnings,
        notes=notes,
        active=ThresholdsPublic(**vars(active)),
    )

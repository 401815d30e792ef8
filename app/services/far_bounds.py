"""Upper bounds on measured false-accept rates, and FARs stated so they never understate."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.evaluation.far_calibration import allowed_accepts
from app.evaluation.identification import per_comparison_far

if TYPE_CHECKING:
    from app.services.calibration import Calibration

# A stated FAR is the upper end of the one-sided 95% confidence interval of the rate that
# the calibration's impostor scores measured (Clopper-Pearson): the highest true rate that
# would still have let as few of them through with 5% probability. With none of n through,
# that is 1 - 0.05^(1/n), about 3/n (the "rule of three").
CONFIDENCE = 0.95


def far_upper_bound(
    accepts: int, impostors: int, confidence: float = CONFIDENCE, design_effect: float = 1.0
) -> float:
    """The one-sided `confidence` upper bound of a FAR measured as accepts / impostors,
    on impostors / `design_effect` independent scores (app/evaluation/clustered_rate.py)."""
    if impostors < 1 or not 0 <= accepts <= impostors:
        raise ValueError(f"need 0 <= accepts <= impostors >= 1, got {accepts}/{impostors}")
    if accepts == impostors:
        return 1.0
    # Here, not at the top: scipy.stats takes 0.7 s to import, and every command line
    # (--help included) imports this module through the calibrate command.
    from scipy.stats import beta

    if not math.isfinite(design_effect):
        return 1.0  # no measure of the evidence: vouch for nothing
    effect = max(1.0, design_effect)
    hits, misses = accepts / effect, (impostors - accepts) / effect
    return float(beta.ppf(confidence, hits + 1, misses))


def vouched_far(
    target: float,
    impostors: int,
    comparisons: int = 1,
    accepts: int | None = None,
    design_effect: float | None = None,
) -> float:
    """The FAR to state for a threshold calibrated for `target` on `impostors` impostor
    scores, `accepts` of which it lets through: the target, but never less than the 95%
    upper bound of what those scores measured, per comparison, over `comparisons`
    comparisons (identify's whole gallery), counting them as impostors / `design_effect`
    independent ones (None: calibrations stored before it was measured, as independent).
    Without `accepts` (calibrations stored before they were counted), as many as the target
    allowed.

    It is never stated below what was seen: 5 of 541 impostors through at a target of 0.01
    is stated as 0.0194, and two identical photos under two names (a score of 1.0 that
    passes any threshold) raise it too."""
    comparisons = max(1, comparisons)
    per_target = per_comparison_far(target, comparisons) if comparisons > 1 else target
    if accepts is None:
        accepts = allowed_accepts(per_target, impostors)
    bound = far_upper_bound(accepts, impostors, design_effect=design_effect or 1.0)
    return round_up(max(target, far_over(bound, comparisons)))


def accepted(impostor_scores: npt.ArrayLike, threshold: float, noise: float = 0.0) -> int:
    """How many impostor scores a threshold lets through, as verify and identify decide:
    similarity >= threshold; with `noise` (SCORE_NOISE), also those within it below the
    threshold, which the service's own score of the pair may lift over it."""
    scores = np.asarray(impostor_scores, dtype=np.float64)
    return int(np.count_nonzero(scores >= threshold - noise))


def far_over(far: float, comparisons: int) -> float:
    """The chance that at least one of `comparisons` independent comparisons, each with
    false-accept rate `far`, accepts: 1 - (1 - far)^comparisons."""
    if comparisons <= 1 or far >= 1.0:
        return far
    return -math.expm1(comparisons * math.log1p(-far))


def round_up(value: float, digits: int = 3) -> float:
    """`value` to `digits` significant digits, rounded up: a stated FAR never understates
    (3/9 is 0.334, not 0.333). Works on the shortest decimal that reads back as `value`,
    so that 0.001 stays 0.001 rather than rounding its binary tail up."""
    if not math.isfinite(value) or value == 0:
        return value
    shown = Decimal(repr(float(value)))  # numpy 2's repr would be "np.float64(...)"
    step = Decimal(1).scaleb(shown.adjusted() - (digits - 1))
    return float(shown.quantize(step, rounding=ROUND_CEILING))


def stated_verify_far(calibration: Calibration) -> float:
    """The verify FAR per pair that responses state for `calibration` (vouched_far)."""
    return vouched_far(
        calibration.verify_far,
        calibration.impostors,
        accepts=calibration.verify_accepts,
        design_effect=calibration.verify_design_effect,
    )


def stated_identify_far(calibration: Calibration, gallery_size: int) -> float:
    """The chance of a stranger's match that responses state for `calibration` at a
    gallery of `gallery_size` (vouched_far over that many comparisons)."""
    return vouched_far(
        stranger_far(calibration, gallery_size),
        calibration.identify_scores or calibration.impostors,
        gallery_size,
        accepts=calibration.identify_accepts,
        design_effect=calibration.identify_design_effect,
    )


def stranger_far(calibration: Calibration, gallery_size: int) -> float:
    """The chance that a stranger matches someone in a gallery of `gallery_size`, at the
    threshold calibrated for `calibration.identify_far` at `calibration.gallery_size`:
    the same per-comparison FAR p, over N comparisons, 1 - (1 - p)^N."""
    if gallery_size == calibration.gallery_size:
        return calibration.identify_far
    per = per_comparison_far(calibration.identify_far, calibration.gallery_size)
    return far_over(per, gallery_size)

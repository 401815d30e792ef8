"""Thresholds calibrated on impostor scores to a target FAR, and whether enough back them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# A FAR measured on fewer than ~10 expected false accepts is mostly noise.
MIN_EXPECTED_FALSE_ACCEPTS = 10

# The smallest target FAR calibration accepts. Measuring it would take 10^10 impostor pairs;
# far smaller ones overflow the arithmetic (1/FAR) or underflow to 0 per comparison.
MIN_TARGET_FAR = 1e-9

# How far above the highest score it must reject a calibrated threshold sits, at most. The
# service scores in float32 (FAISS or numpy), which rounds differently from the float64
# scores here by about 1e-7: a threshold one float64 step above an impostor's score let
# that impostor through in the service.
SCORE_MARGIN = 1e-6

# How far the service's score of a pair may lie from the score calibration computed for it.
# bf16 keeps 8 significant bits: the same pair scored by the service and by
# `python -m app calibrate` differed by up to 0.0021 (an audit, 783 pairs; the detector's
# landmarks differ in their last bits between the two, and every rounding after them
# changes), and 20 pixels nudged by one grey level moved scores by up to 0.0030. A threshold
# 1e-6 above the highest rejected impostor let that impostor through in the service, and a
# FAR stated from 0 accepts was one from 1. Calibrations allow for it whatever their own
# precision: the processes that serve them may infer in another (FACE_EMBED_PRECISION=auto
# picks per host), and bf16 scores lie up to 0.0063 from fp32 ones (783 pairs).
SCORE_NOISE = 0.004


def impostors_needed(far: float) -> int:
    """Impostor scores needed to expect MIN_EXPECTED_FALSE_ACCEPTS false accepts at `far`."""
    return math.ceil(MIN_EXPECTED_FALSE_ACCEPTS / far - 1e-9)


@dataclass(frozen=True)
class FarCalibration:
    """A threshold calibrated on impostor scores and how well the data supports it."""

    threshold: float
    far_actual: float
    impostors: int
    # True when target_far < 1/impostors: no observed impostor may pass, so the
    # threshold sits just above the highest impostor score and the FAR is unmeasured.
    below_resolution: bool


def calibrate_far(
    impostor_scores: npt.ArrayLike, target_far: float, noise: float = 0.0
) -> FarCalibration:
    """The smallest threshold that lets at most `target_far` of impostors through.

    With impostors sorted high to low, at most k = floor(target_far * n) may pass, so the
    threshold sits above the (k+1)-th highest score: a margin above it (twice the scores'
    `noise` (SCORE_NOISE), and at least SCORE_MARGIN), or halfway to the next higher
    score where that is closer (then the margin can shrink below the noise it is there to
    cover: such close scores cannot be split reliably, and `accepted` with the noise
    counts the rejected one as one that may pass).
    Ties are never split: if that score is shared with higher-ranked ones they are all
    rejected, so the achieved FAR is the largest attainable fraction <= target_far
    (possibly below it). When target_far < 1/n, k = 0 and the threshold sits just above
    the maximum impostor score with `below_resolution` set.

    Scores are cosines, clipped to [-1, 1] (float32 gives 1.0000001 for one image against
    itself), and the threshold never exceeds 1: an impostor pair of two identical images
    (one photo enrolled under two subjects) passes any threshold, and `far_actual` says so.
    """
    if not 0.0 < target_far < 1.0:  # per-comparison rates may lie below MIN_TARGET_FAR
        raise ValueError(f"a target FAR must lie in (0, 1), got {target_far}")
    imp = np.sort(np.asarray(impostor_scores, dtype=np.float64).ravel())[::-1]
    if imp.size == 0 or not np.all(np.isfinite(imp)):
        raise ValueError("need at least one finite impostor score")
    imp = np.clip(imp, -1.0, 1.0)
    allowed = allowed_accepts(target_far, imp.size)
    rejected = float(imp[allowed])  # allowed < n, as target_far < 1
    higher = imp[:allowed][imp[:allowed] > rejected]  # sorted: the last is the next score up
    threshold = rejected + max(SCORE_MARGIN, 2 * noise)
    if higher.size:
        threshold = min(threshold, (rejected + float(higher[-1])) / 2)
    threshold = min(max(threshold, float(np.nextafter(rejected, np.inf))), 1.0)
    far_actual = float(np.mean(imp >= threshold))
    return FarCalibration(threshold, far_actual, int(imp.size), below_resolution=allowed == 0)


def allowed_accepts(target_far: float, n: int) -> int:
    """The most of `n` impostors that may pass for a FAR of at most `target_far`: k with
    k / n <= target_far, computed on the quotients, so that 0.57 * 100 = 56.99... loses no
    accept and a target a hair below 1/100 gains none."""
    k = math.floor(target_far * n)
    while (k + 1) / n <= target_far:
        k += 1
    while k > 0 and k / n > target_far:
        k -= 1
    return k


def threshold_for_far(
    impostor_scores: npt.ArrayLike, target_far: float, noise: float = 0.0
) -> float:
    """Threshold with a fraction of impostor scores >= it of at most target_far.

    See `calibrate_far` for ties, `noise` and target_far < 1/len (just above the max
    impostor score); call it directly to get the `below_resolution` flag.
    """
    return calibrate_far(impostor_scores, target_far, noise).threshold


def far_reliability(
    cal: FarCalibration, far: float, counted: str, one: str, metric: str
) -> tuple[bool, str]:
    """Whether `cal` rests on enough impostors to measure `far`, and a sentence saying so.

    One rule for every rate calibrated on impostors (TAR for pairs, DIR for strangers), so
    a figure from too few of them is flagged the same way wherever it is reported.
    `counted` names the impostors in the plural, `one` in the singular.
    """
    needed = impostors_needed(far)
    reliable = cal.impostors >= needed
    if reliable:
        note = f"{cal.impostors} {counted}; FAR={far:g} is measurable (needs >= {needed})."
    else:
        note = (
            f"Only {cal.impostors} {counted}: FAR={far:g} needs at least {needed} "
            f"to see about {MIN_EXPECTED_FALSE_ACCEPTS} false accepts, so this {metric} "
            "is unreliable."
        )
    if cal.below_resolution:
        note += f" No {one} may pass, so the threshold is just above the highest {one} score."
    return reliable, note

"""The threshold for a target FAR: tight on the calibration scores, safe under rounding."""

import numpy as np
import pytest

from app.evaluation.far_calibration import (
    SCORE_MARGIN,
    SCORE_NOISE,
    allowed_accepts,
    calibrate_far,
    threshold_for_far,
)
from app.services.far_bounds import accepted


@pytest.mark.parametrize("far", [0.1, 0.01])
@pytest.mark.parametrize("decimals", [None, 2])  # 2 decimals -> many ties
def test_threshold_for_far_is_tight_on_calibration_scores(far, decimals):
    impostors = np.random.default_rng(1).normal(0.1, 0.15, 2_345)
    if decimals is not None:
        impostors = impostors.round(decimals)
    threshold = threshold_for_far(impostors, far)
    achieved = np.mean(impostors >= threshold)
    assert achieved <= far
    # No other cut through the scores achieves a larger FAR that is still <= far...
    fractions = np.array([np.mean(impostors >= c) for c in np.unique(impostors)])
    assert achieved == fractions[fractions <= far].max()
    # ...and the threshold is as low as that allows, but for the margin that keeps the
    # highest rejected score rejected under float32 rounding: any value at or below that
    # score lets in too many.
    rejected = impostors[impostors < threshold].max()
    assert 0 < threshold - rejected <= SCORE_MARGIN
    assert np.mean(impostors >= rejected) > far


def test_the_margin_is_halved_where_the_next_score_up_is_closer():
    # k = 1 may pass: 0.4 stays out, 0.4000004 gets in, so the cut lies halfway between.
    cal = calibrate_far([0.4000004, 0.4, 0.1, 0.0], 0.25)
    assert cal.threshold == pytest.approx(0.4000002)
    assert cal.far_actual == 0.25
    # A float32 score of the rejected pair, rounded differently, still stays below it.
    assert float(np.float32(0.4)) + 1e-7 < cal.threshold


def test_the_count_allowed_to_pass_is_computed_on_the_fractions():
    assert allowed_accepts(0.57, 100) == 57  # 0.57 * 100 is 56.99999999999999
    assert allowed_accepts(0.009999999999, 1000) == 9  # a hair below 10/1000 allows 9
    assert allowed_accepts(0.9999999999, 1) == 0
    assert allowed_accepts(0.01, 1000) == 10


def test_threshold_for_far_ties_and_resolution():
    # floor(0.5 * 4) = 2 may pass, but the three tied 0.5s cannot be split: none pass.
    tied = calibrate_far([0.5, 0.5, 0.5, 0.1], 0.5)
    assert tied.threshold > 0.5
    assert (tied.far_actual, tied.below_resolution) == (0.0, False)
    # 0.1 < 1/5: no impostor may pass, so just above the maximum, flagged.
    coarse = calibrate_far([0.1, 0.4, 0.2, 0.3, 0.0], 0.1)
    assert coarse.threshold == pytest.approx(0.4 + SCORE_MARGIN)
    assert coarse.below_resolution


def test_an_identical_impostor_pair_caps_the_threshold_at_one():
    # float32 scores one image against itself at 1.0000001; no threshold <= 1 rejects it.
    same_image = float(np.float32(1.0000001))
    assert same_image > 1.0
    cal = calibrate_far([same_image, 0.5, 0.2, 0.1], 0.01)
    assert cal.threshold == 1.0
    assert cal.far_actual == 0.25 and cal.below_resolution
    assert threshold_for_far([1.0, 0.3], 0.4) == 1.0


def test_a_far_outside_0_1_is_rejected():
    with pytest.raises(ValueError, match="FAR"):
        threshold_for_far([0.1, 0.2], 0.0)


def test_a_calibrated_threshold_sits_twice_the_score_noise_above_the_rejected_score():
    """bf16 scores of one pair differ by up to about 0.003 between the service and the
    calibration: 1e-6 above the highest rejected impostor let it through in the service."""
    noise = SCORE_NOISE
    scores = [0.5, 0.3067021, 0.2, 0.1]
    cal = calibrate_far(scores, 0.25, noise)  # 0.5 may pass, 0.3067021 may not
    assert cal.threshold == pytest.approx(0.3067021 + 2 * noise)
    # A service score up to `noise` higher stays rejected, and none of it counts as passing.
    assert 0.3067021 + noise < cal.threshold
    assert accepted(scores, cal.threshold, noise) == 1
    assert calibrate_far(scores, 0.25).threshold == pytest.approx(0.3067021 + SCORE_MARGIN)


def test_a_rejected_score_within_the_noise_of_the_threshold_counts_as_passing():
    # 0.401 may pass and 0.4 may not: halfway between them is within the noise of both.
    scores = [0.401, 0.4, 0.1, 0.0]
    cal = calibrate_far(scores, 0.25, SCORE_NOISE)
    assert cal.threshold == pytest.approx(0.4005)
    assert cal.far_actual == 0.25  # on these scores, one of four
    # In the service either may pass: the stated FAR is built on two.
    assert accepted(scores, cal.threshold) == 1
    assert accepted(scores, cal.threshold, SCORE_NOISE) == 2

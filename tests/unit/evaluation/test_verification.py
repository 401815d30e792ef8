"""Hand-checked cases and properties for the verification metrics."""

import json

import numpy as np
import pytest

from app.evaluation.far_calibration import (
    SCORE_MARGIN,
    allowed_accepts,
    calibrate_far,
    threshold_for_far,
)
from app.evaluation.verification import (
    best_threshold,
    eer,
    kfold_accuracy,
    plot_roc,
    tar_at_far,
    verification_report,
)

# Genuine (1) scores 0.9, 0.8, 0.4; impostor (0) scores 0.7, 0.3, 0.2.
SCORES = [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]
LABELS = [1, 1, 0, 1, 0, 0]

SEPARATED_SCORES = [0.9, 0.85, 0.8, 0.75, 0.3, 0.2, 0.1, 0.05]
SEPARATED_LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def accuracy(scores, labels, threshold):
    return float(np.mean((np.asarray(scores) >= threshold) == (np.asarray(labels) == 1)))


def test_best_threshold_hand_case():
    # Candidates and accuracy: 0.2 -> 3/6, 0.25 -> 4/6, 0.35 -> 5/6 (only impostor 0.7
    # accepted), 0.55 -> 4/6, 0.75 -> 5/6 (only genuine 0.4 rejected), 0.85 -> 4/6,
    # above 0.9 -> 3/6. Two optima tie; the lowest wins.
    threshold = best_threshold(SCORES, LABELS)
    assert threshold == pytest.approx(0.35)
    assert accuracy(SCORES, LABELS, threshold) == pytest.approx(5 / 6)


def test_kfold_threshold_comes_from_training_folds():
    # 10 folds of one genuine + one impostor each. The genuine outlier 0.05 sits below
    # every impostor (0.1). Its fold trains on separable data -> threshold 0.5, and the
    # outlier is rejected: 1/2. Every other fold trains with the outlier; 0.5 still gets
    # 17/18 there (0.05 and 0.075 accept the impostors), and the test pair is right: 1.0.
    # mean = (9 * 1 + 0.5) / 10 = 0.95; std = sqrt((9 * 0.05^2 + 0.45^2) / 10) = 0.15.
    scores = [0.9] * 9 + [0.05] + [0.1] * 10
    labels = [1] * 10 + [0] * 10
    mean, std, thresholds = kfold_accuracy(scores, labels, folds=10, seed=3)
    assert mean == pytest.approx(0.95)
    assert std == pytest.approx(0.15)
    assert thresholds == pytest.approx([0.5] * 10)


def test_kfold_reduces_folds_to_the_smaller_class():
    mean, std, thresholds = kfold_accuracy(SEPARATED_SCORES, SEPARATED_LABELS, folds=10)
    assert len(thresholds) == 4
    assert (mean, std) == (1.0, 0.0)
    with pytest.raises(ValueError, match="two genuine"):
        kfold_accuracy([0.9, 0.1, 0.2], [1, 0, 0])


def test_tar_at_far_hand_case():
    # FAR 1/3 of 3 impostors allows one false accept: the threshold sits just above the
    # second-highest impostor (0.3), only impostor 0.7 passes, every genuine passes.
    point = tar_at_far(SCORES, LABELS, 1 / 3)
    assert 0.3 < point.threshold < 0.3001
    assert (point.tar, point.far_actual, point.impostors) == (1.0, pytest.approx(1 / 3), 3)
    # 3 impostors are far fewer than 10 / (1/3) = 30.
    assert not point.reliable
    assert "unreliable" in point.note
    # FAR 0.2 allows floor(0.6) = 0 accepts: just above impostor 0.7, genuine 0.4 is lost.
    strict = tar_at_far(SCORES, LABELS, 0.2)
    assert 0.7 < strict.threshold < 0.7001
    assert (strict.tar, strict.far_actual) == (pytest.approx(2 / 3), 0.0)
    assert "highest impostor" in strict.note


@pytest.mark.parametrize(("far", "needed"), [(1e-2, 1_000), (1e-3, 10_000)])
def test_reliable_needs_ten_over_far_impostors(far, needed):
    rng = np.random.default_rng(0)
    for impostors, reliable in [(needed - 1, False), (needed, True)]:
        scores = np.concatenate([rng.normal(0.7, 0.1, 50), rng.normal(0.1, 0.1, impostors)])
        labels = np.r_[np.ones(50), np.zeros(impostors)]
        point = tar_at_far(scores, labels, far)
        assert point.reliable is reliable
        assert str(needed) in point.note


def test_eer_hand_case():
    # At threshold 0.7: FAR = 1/3 (impostor 0.7 accepted), FRR = 1/3 (genuine 0.4
    # rejected). The ROC passes through that point exactly, so no interpolation.
    rate, threshold = eer(SCORES, LABELS)
    assert rate == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7)


def test_eer_interpolates_between_roc_points():
    # Thresholds 0.8 -> (FPR 0, FNR 1/2), 0.6 -> (FPR 1/2, FNR 0): FPR - FNR goes from
    # -1/2 to +1/2, crossing halfway, so EER = 1/4 at threshold 0.7.
    rate, threshold = eer([0.8, 0.6, 0.6, 0.2], [1, 1, 0, 0])
    assert rate == pytest.approx(0.25)
    assert threshold == pytest.approx(0.7)


def test_report_hand_case_is_json_serialisable():
    # AUC: genuine 0.9 and 0.8 beat all three impostors (6 pairs); genuine 0.4 beats
    # 0.3 and 0.2 but not 0.7 (2 pairs): 8 of 9 genuine/impostor pairs are concordant.
    report = json.loads(json.dumps(verification_report(SCORES, LABELS, fars=(0.5,), folds=3)))
    assert (report["pairs"], report["genuine"], report["impostor"]) == (6, 3, 3)
    assert report["roc_auc"] == pytest.approx(8 / 9)
    assert report["eer"] == pytest.approx(1 / 3)
    assert report["best_threshold"] == pytest.approx(0.35)
    assert [p["far_target"] for p in report["tar_at_far"]] == [0.5]


def test_perfectly_separated_data():
    report = verification_report(SEPARATED_SCORES, SEPARATED_LABELS)
    assert report["folds"] == 4
    assert (report["accuracy_mean"], report["accuracy_std"]) == (1.0, 0.0)
    assert (report["roc_auc"], report["eer"]) == (1.0, 0.0)
    assert 0.3 <= report["eer_threshold"] <= 0.75
    assert accuracy(SEPARATED_SCORES, SEPARATED_LABELS, report["best_threshold"]) == 1.0


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


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        best_threshold([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="equal"):
        eer([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="both genuine"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="FAR"):
        threshold_for_far([0.1, 0.2], 0.0)


@pytest.mark.parametrize("separated", [False, True])
def test_plot_roc_writes_png(tmp_path, separated):
    rng = np.random.default_rng(2)
    if separated:
        scores, labels = SEPARATED_SCORES, SEPARATED_LABELS
    else:
        scores = np.r_[rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.15, 3_000)]
        labels = np.r_[np.ones(300), np.zeros(3_000)]
    path = tmp_path / "roc.png"
    plot_roc(scores, labels, path, "test ROC")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert path.stat().st_size > 1_000

"""Hand-checked cases and properties for the verification metrics."""

import json

import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="2 genuine and 2 impostor"):
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


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        best_threshold([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="equal"):
        eer([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="both genuine"):
        eer([0.1, 0.2], [1, 1])


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


@pytest.mark.parametrize(("scores", "labels"), [([0.9, 0.2], [1, 0]), ([0.9, 0.4, 0.3], [0, 1, 0])])
def test_too_few_pairs_to_fold_leave_the_other_metrics(scores, labels):
    with pytest.raises(ValueError, match="needs at least 2 genuine and 2 impostor pairs"):
        verification_report(scores, labels)
    report = json.loads(json.dumps(verification_report(scores, labels, kfold_optional=True)))
    # Same keys as a full report: only the k-fold figures are missing.
    assert report.keys() == verification_report(SCORES, LABELS, folds=3).keys()
    assert (report["folds"], report["accuracy_mean"], report["accuracy_std"]) == (None,) * 3
    assert (report["pairs"], report["genuine"]) == (len(scores), sum(labels))
    assert report["roc_auc"] == (1.0 if labels == [1, 0] else 0.5)
    assert accuracy(scores, labels, report["best_threshold"]) >= 2 / 3
    assert [p["far_target"] for p in report["tar_at_far"]] == [0.01, 0.001]
    assert 0.0 <= report["eer"] <= 1.0

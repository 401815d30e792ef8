"""Hand-checked cases for closed-set rank-k and open-set identification metrics."""

import numpy as np
import pytest

from app.evaluation.far_calibration import threshold_for_far
from app.evaluation.identification import (
    no_looser_than_verify,
    open_set_dir_at_far,
    open_set_threshold,
    rank_k_accuracy,
)

# Four known probes against gallery subjects 0, 1, 2. True subject's rank:
KNOWN = [
    [0.90, 0.30, 0.20],  # subject 0: rank 1, top score 0.90
    [0.60, 0.50, 0.10],  # subject 1: rank 2 (subject 0 scores higher)
    [0.20, 0.10, 0.55],  # subject 2: rank 1, top score 0.55
    [0.40, 0.45, 0.30],  # subject 2: rank 3
]
KNOWN_LABELS = [0, 1, 2, 2]
# Two strangers, best matches 0.70 and 0.50.
STRANGERS = [[0.30, 0.70, 0.40], [0.50, 0.20, 0.10]]
MIXED = np.array(KNOWN + STRANGERS)
MIXED_LABELS = np.array(KNOWN_LABELS + [-1, -1])


@pytest.mark.parametrize(("k", "expected"), [(1, 2 / 4), (2, 3 / 4), (3, 4 / 4)])
def test_rank_k_hand_case(k, expected):
    assert rank_k_accuracy(KNOWN, KNOWN_LABELS, k) == pytest.approx(expected)
    # Strangers are not part of closed-set accuracy.
    assert rank_k_accuracy(MIXED, MIXED_LABELS, k) == pytest.approx(expected)


def test_rank_k_counts_ties_against_the_probe():
    assert rank_k_accuracy([[0.5, 0.5, 0.1]], [0], 1) == 0.0
    assert rank_k_accuracy([[0.5, 0.5, 0.1]], [0], 2) == 1.0


def test_rank_k_rejects_bad_input():
    with pytest.raises(ValueError, match="k must"):
        rank_k_accuracy(KNOWN, KNOWN_LABELS, 4)
    with pytest.raises(ValueError, match="at least one"):
        rank_k_accuracy(STRANGERS, [-1, -1], 1)
    with pytest.raises(ValueError, match="index gallery"):
        rank_k_accuracy(KNOWN, [0, 1, 2, 3], 1)


def test_open_set_dir_hand_case():
    # FAR 1/2 of 2 strangers allows one false alarm: threshold just above the lower
    # stranger max (0.50). Rank-1 known probes: 0.90 and 0.55 pass -> DIR = 2/4.
    result = open_set_dir_at_far(MIXED, MIXED_LABELS, 0.5)
    assert 0.5 < result["threshold"] < 0.5001
    assert result["dir"] == pytest.approx(2 / 4)
    assert result["far_actual"] == pytest.approx(1 / 2)
    assert (result["strangers"], result["known"]) == (2, 4)
    assert not result["below_resolution"]
    # FAR 1/4 allows floor(0.5) = 0 false alarms: just above 0.70, only 0.90 passes.
    strict = open_set_dir_at_far(MIXED, MIXED_LABELS, 0.25)
    assert 0.7 < strict["threshold"] < 0.7001
    assert (strict["dir"], strict["far_actual"]) == (pytest.approx(1 / 4), 0.0)
    assert strict["below_resolution"]


def test_open_set_dir_needs_strangers_and_known():
    with pytest.raises(ValueError, match="both known"):
        open_set_dir_at_far(KNOWN, KNOWN_LABELS, 0.1)


@pytest.fixture
def impostor_scores():
    return np.random.default_rng(0).normal(0.1, 0.1, 100_000)


@pytest.mark.parametrize("far", [0.1, 0.01])
def test_open_set_threshold_with_one_subject_is_the_verification_threshold(impostor_scores, far):
    assert open_set_threshold(impostor_scores, 1, far) == threshold_for_far(impostor_scores, far)


def test_open_set_threshold_rises_with_gallery_size(impostor_scores):
    thresholds = [open_set_threshold(impostor_scores, n, 0.01) for n in (1, 10, 100)]
    assert thresholds[0] < thresholds[1] < thresholds[2]
    # N = 10, target 0.1 -> per-comparison FAR 1 - 0.9 ** 0.1 = 0.010481...
    expected = threshold_for_far(impostor_scores, 1 - 0.9**0.1)
    assert open_set_threshold(impostor_scores, 10, 0.1) == pytest.approx(expected)


def test_open_set_threshold_holds_for_independent_strangers(impostor_scores):
    # When each stranger's 10 comparisons really are independent draws, the false-alarm
    # rate of the max lands on the target (binomial sd over 20,000 strangers ~ 0.002).
    threshold = open_set_threshold(impostor_scores, 10, 0.1)
    strangers = np.random.default_rng(1).normal(0.1, 0.1, (20_000, 10)).max(axis=1)
    assert np.mean(strangers >= threshold) == pytest.approx(0.1, abs=0.01)


def _probes(known: int, strangers: int) -> tuple[np.ndarray, np.ndarray]:
    """`known` probes of 3 subjects, each best on its own, and `strangers` below them."""
    rng = np.random.default_rng(0)
    labels = np.arange(known) % 3
    sim = rng.uniform(0.0, 0.3, (known + strangers, 3))
    sim[np.arange(known), labels] = rng.uniform(0.5, 0.9, known)
    return sim, np.concatenate([labels, np.full(strangers, -1)])


def test_open_set_dir_from_too_few_strangers_is_flagged_unreliable():
    # 300 probes, 200 of them strangers: FAR = 1e-2 needs 10 / 0.01 = 1,000 strangers.
    sim, labels = _probes(100, 200)
    result = open_set_dir_at_far(sim, labels, 0.01)
    assert (result["strangers"], result["known"]) == (200, 100)
    assert result["reliable"] is False and not result["below_resolution"]
    assert "Only 200 strangers" in result["note"] and "needs at least 1000" in result["note"]
    assert "DIR is unreliable" in result["note"]


@pytest.mark.parametrize(("strangers", "reliable"), [(999, False), (1000, True)])
def test_open_set_dir_is_reliable_from_ten_over_far_strangers(strangers, reliable):
    sim, labels = _probes(30, strangers)
    result = open_set_dir_at_far(sim, labels, 0.01)
    assert result["reliable"] is reliable
    assert ("is measurable" in result["note"]) is reliable


def test_open_set_dir_below_resolution_says_why_in_its_note():
    strict = open_set_dir_at_far(MIXED, MIXED_LABELS, 0.25)
    assert strict["reliable"] is False
    assert "Only 2 strangers" in strict["note"]
    assert "No stranger may pass" in strict["note"]


def test_identify_is_never_looser_than_verify_at_the_same_target() -> None:
    # A small gallery's estimates, as an audit found them: identify a hair below verify.
    assert no_looser_than_verify(0.26439134, 0.001, 0.26439138, 0.001) == 0.26439138
    assert no_looser_than_verify(0.31, 0.001, 0.26, 0.001) == 0.31
    assert no_looser_than_verify(0.25, 0.0001, 0.26, 0.001) == 0.26  # a stricter target
    # A looser identify target, asked for explicitly, may give a looser threshold.
    assert no_looser_than_verify(0.2, 0.01, 0.26, 0.001) == 0.2

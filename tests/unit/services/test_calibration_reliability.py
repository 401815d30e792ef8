"""far_checks: the evaluation's rule on a stored calibration, and the smallest targets it names."""

from __future__ import annotations

import pytest

from app.services.calibration import METHOD_STRANGER_SET, Calibration
from app.services.calibration_reliability import far_checks, gallery_refusal, is_reliable, public
from tests.unit.services.test_calibration import make_calibration


def gallery_calibration(
    verify_far: float, identify_far: float, impostors: int, scores: int, subjects: int
) -> Calibration:
    return make_calibration("m@1").model_copy(
        update={
            "source": "gallery",
            "pairs": None,
            "verify_far": verify_far,
            "identify_far": identify_far,
            "impostors": impostors,
            "identify_scores": scores,
            "gallery_size": subjects,
        }
    )


def test_about_ten_expected_false_accepts_make_a_target_measurable() -> None:
    # 1e-3 needs 10,000 impostor pairs; a stranger FAR of 0.1 at N=1 needs 100 scores.
    verify, identify = far_checks(gallery_calibration(1e-3, 0.1, 10_000, 100, 1))
    assert (verify.needed, identify.needed) == (10_000, 100)
    assert verify.reliable and identify.reliable
    verify, identify = far_checks(gallery_calibration(1e-3, 0.1, 9_999, 99, 1))
    assert (verify.reliable, identify.reliable) == (False, False)


def test_identify_is_measured_per_comparison_at_the_gallery_size() -> None:
    # Over N=20 subjects, 0.1 is 1 - 0.9^(1/20) = 0.00525 per comparison: 1,904 scores.
    _, identify = far_checks(gallery_calibration(0.1, 0.1, 10_000, 1_903, 20))
    assert identify.per_score == pytest.approx(1 - 0.9 ** (1 / 20))
    assert (identify.needed, identify.reliable) == (1_904, False)
    assert "0.1 at N=20 (0.00525 per comparison)" in identify.sentence()


def test_a_calibration_from_pairs_measures_identify_on_its_impostor_pairs() -> None:
    stored = make_calibration("m@1")  # 541 pairs, identify_scores not counted apart
    assert stored.identify_scores is None
    assert far_checks(stored)[1].scores == 541
    assert not is_reliable(stored)


def test_a_stranger_set_measures_the_stranger_far_itself() -> None:
    # Each stranger's best score over the gallery already is a gallery-wide trial.
    stored = make_calibration("m@1").model_copy(
        update={"method": METHOD_STRANGER_SET, "verify_far": 0.01, "impostors": 5_000}
    )
    _, identify = far_checks(stored)
    assert (identify.per_score, identify.needed, identify.reliable) == (0.01, 1_000, True)


@pytest.mark.parametrize(
    ("impostors", "scores", "subjects"),
    [(40, 40, 1), (49, 49, 4), (135, 255, 16), (541, 541, 20), (10_007, 123_456, 300)],
)
def test_the_smallest_targets_named_are_measurable_and_a_hair_less_is_not(
    impostors: int, scores: int, subjects: int
) -> None:
    counts = (impostors, scores, subjects)
    verify, identify = far_checks(gallery_calibration(1e-6, 1e-6, *counts))
    assert verify.smallest_target is not None and identify.smallest_target is not None
    assert is_reliable(
        gallery_calibration(verify.smallest_target, identify.smallest_target, *counts)
    )
    tighter = (verify.smallest_target / 1.01, identify.smallest_target / 1.01)
    assert not any(check.reliable for check in far_checks(gallery_calibration(*tighter, *counts)))


def test_too_few_scores_for_any_target_name_none() -> None:
    verify, identify = far_checks(gallery_calibration(1e-3, 1e-3, 1, 2, 2))
    assert verify.smallest_target is None and identify.smallest_target is None
    error = gallery_refusal(gallery_calibration(1e-3, 1e-3, 1, 2, 2), (verify, identify))
    assert (error.code, error.status_code) == ("calibration_unreliable", 422)
    assert "larger FAR" not in error.message
    assert "enrol faces of more subjects" in error.message


def test_the_public_view_says_whether_it_was_reliable() -> None:
    assert public(gallery_calibration(0.01, 0.01, 1_000, 1_000, 1)).reliable is True
    assert public(gallery_calibration(0.01, 0.01, 999, 1_000, 1)).reliable is False

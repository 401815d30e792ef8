"""threshold_warnings on hand-made scores: thresholds that accept nobody, or far beyond the FAR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.config import Settings
from app.evaluation.far_calibration import calibrate_far
from app.gallery import calibrations_repo
from app.services.calibration_import import LEGACY_FILE, import_legacy_file
from app.services.calibration_reliability import far_checks
from app.services.calibration_warnings import (
    calibration_warnings,
    degenerate_refusal,
    genuine_reject_rate,
    threshold_warnings,
)
from tests.calibrations import store_for
from tests.unit.services.test_calibration import make_calibration

# 100 impostor scores spread over [-0.2, 0.3], and genuine ones over [0.5, 0.8].
IMPOSTORS = np.linspace(-0.2, 0.3, 100)
GENUINE = np.linspace(0.5, 0.8, 20)


def test_a_threshold_between_impostors_and_genuine_scores_is_fine() -> None:
    assert threshold_warnings("verify", 0.35, IMPOSTORS, GENUINE, 0.01) == []
    # Equal to the highest genuine score: that one is still accepted (score >= threshold).
    assert threshold_warnings("verify", 0.8, IMPOSTORS, GENUINE, 0.01) == []
    # Without genuine scores nothing can be said about them, and nothing is.
    assert threshold_warnings("verify", 0.35, IMPOSTORS, [], 0.01) == []


def test_one_hard_genuine_pair_below_a_strict_threshold_is_no_warning() -> None:
    """A gallery with a pair or two of one person: a profile or an old photo scoring below a
    strict identify threshold is ordinary, and refused a sound calibration."""
    assert threshold_warnings("identify", 0.62, IMPOSTORS, [0.58], 0.01) == []
    assert threshold_warnings("identify", 0.62, IMPOSTORS, [0.58] * 4, 0.01) == []
    assert threshold_warnings("identify", 0.62, IMPOSTORS, [0.58] * 5, 0.01) != []


def test_a_threshold_above_every_genuine_score_accepts_nobody() -> None:
    [warning] = threshold_warnings("identify", 0.85, IMPOSTORS, GENUINE, 0.01)
    assert warning == (
        "identify: threshold 0.8500 is above all 20 genuine scores (the highest 0.8000), "
        "so it accepts no genuine match."
    )


def test_over_twice_the_target_passing_is_flagged_and_twice_is_not() -> None:
    # 2 of 100 through at a target of 0.01: exactly twice, within the margin.
    assert threshold_warnings("verify", IMPOSTORS[-2], IMPOSTORS, GENUINE, 0.01) == []
    [warning] = threshold_warnings("verify", IMPOSTORS[-3], IMPOSTORS, GENUINE, 0.01)
    assert warning == (
        "verify: 3 of 100 impostor scores (0.03) pass it, over 2x the 0.01 per score its "
        "target allows."
    )


def test_identical_photos_as_impostors_push_the_threshold_to_the_top() -> None:
    # Three impostor pairs of one photo: float32 gives a hair above 1.0 for them.
    impostors = np.concatenate([IMPOSTORS, [1.0000001, 1.0000001, 0.99999994]])
    threshold = calibrate_far(impostors, 0.01).threshold
    assert threshold == 1.0
    warnings = threshold_warnings("identify", threshold, impostors, GENUINE, 0.01)
    assert [w.split(";")[0].split(",")[0] for w in warnings] == [
        "identify: threshold 1.0000 is the top of the cosine scale",
        "identify: threshold 1.0000 is above all 20 genuine scores (the highest 0.8000)",
    ]
    assert "3 impostor scores of 0.992 or more" in warnings[0]
    # A target of 0.001: 2 of 103 pass (both above 1.0), over twice its FAR.
    warnings = threshold_warnings("identify", 1.0, impostors, GENUINE, 0.001)
    assert warnings[-1].startswith("identify: 2 of 103 impostor scores (0.0194) pass it")


def test_a_calibration_is_checked_per_threshold_against_its_own_scores() -> None:
    calibration = make_calibration("m@1").model_copy(
        update={"verify_threshold": 0.35, "identify_threshold": 1.0, "verify_far": 0.01}
    )
    identify_scores = np.concatenate([IMPOSTORS, [1.0000001] * 5])
    warnings = calibration_warnings(calibration, IMPOSTORS, identify_scores, GENUINE)
    assert warnings and all(warning.startswith("identify: ") for warning in warnings)
    # 5 of 105 at N=20 against 1 - 0.99^(1/20) = 0.000502 per score.
    assert warnings[-1].startswith("identify: 5 of 105 impostor scores (0.0476) pass it")
    assert "0.000502 per score" in warnings[-1]

    error = degenerate_refusal(
        calibration.model_copy(update={"warnings": warnings}), far_checks(calibration), "do X"
    )
    assert (error.code, error.status_code) == ("calibration_degenerate", 422)
    assert error.details["warnings"] == list(warnings)
    assert error.details["identify"]["gallery_size"] == 20
    assert error.message.endswith("unchanged. To calibrate, do X.")


def test_genuine_reject_rate() -> None:
    assert genuine_reject_rate(GENUINE, 0.85) == 1.0
    assert genuine_reject_rate(GENUINE, 0.5) == 0.0
    assert genuine_reject_rate([], 0.5) is None


def test_warnings_are_stored_and_files_without_them_still_load(tmp_path: Path) -> None:
    store = store_for(Settings(data_dir=tmp_path))
    old = json.loads(make_calibration("m@old").model_dump_json())
    del old["warnings"]  # as written before warnings existed
    (tmp_path / LEGACY_FILE).write_text(json.dumps({"m@old": old}))
    import_legacy_file(tmp_path, store.sessions)
    loaded = store.load("m@old")
    assert loaded is not None and loaded.warnings == ()

    warned = make_calibration("m@new").model_copy(update={"warnings": ("identify: bad.",)})
    store.save(warned)
    assert store.load("m@new") == warned
    with store.sessions() as session:
        assert calibrations_repo.get(session, "m@new")["warnings"] == ["identify: bad."]  # type: ignore[index]

"""Threshold precedence: settings, then a stored calibration, then the embedder default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.services.calibration import Calibration, CalibrationStore
from app.services.thresholds import active_thresholds


def calibrate(data_dir: Path, version: str) -> None:
    CalibrationStore(data_dir).save(
        Calibration(
            model_version=version,
            verify_threshold=0.33,
            verify_far=0.001,
            identify_threshold=0.44,
            identify_far=0.01,
            gallery_size=50,
            method="stranger set",
            pairs=Path("pairs.csv"),
            impostors=5000,
        )
    )


def test_embedder_default_without_calibration(tmp_path: Path, models: Any) -> None:
    embedder = models.embedder
    active = active_thresholds(Settings(data_dir=tmp_path), embedder)
    assert (active.verify, active.identify) == (
        embedder.default_thresholds.verify,
        embedder.default_thresholds.identify,
    )
    assert active.verify_far is None and active.source == "embedder default"


def test_calibration_wins_over_default_and_reports_far(tmp_path: Path, models: Any) -> None:
    calibrate(tmp_path, models.embedder.version)
    calibrate(tmp_path, "some-other-model@123")
    active = active_thresholds(Settings(data_dir=tmp_path), models.embedder)
    assert (active.verify, active.verify_far) == (0.33, 0.001)
    # 5000 impostor scores vouch for 3/5000 per comparison; over 50 subjects that is
    # 1 - (1 - 6e-4)^50 = 0.0296, more than the 0.01 the identify threshold aimed at.
    assert (active.identify, active.identify_far) == (0.44, 0.0296)
    assert active.source.startswith("calibrated")


def test_settings_override_a_calibration(tmp_path: Path, models: Any) -> None:
    calibrate(tmp_path, models.embedder.version)
    active = active_thresholds(Settings(data_dir=tmp_path, verify_threshold=0.5), models.embedder)
    assert (active.verify, active.verify_far) == (0.5, None)
    assert (active.identify, active.identify_far) == (0.44, 0.0296)
    assert active.source.startswith("verify: settings; identify: calibrated")

"""Threshold precedence: settings, then a stored calibration, then the embedder default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.services.calibration import Calibration
from app.services.thresholds import GalleryCounts, active_thresholds
from app.state import Thresholds
from tests.calibrations import store_for


def thresholds(
    settings: Settings, embedder: Any, gallery: GalleryCounts | None = None
) -> Thresholds:
    """The thresholds a service on `settings` would serve."""
    return active_thresholds(settings, store_for(settings).sessions, embedder, gallery)


def calibrate(data_dir: Path, version: str) -> None:
    store_for(Settings(data_dir=data_dir)).save(
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
            # None passed either threshold: the 95% upper bound is 1 - 0.05^(1/5000), 6e-4.
            verify_accepts=0,
            identify_accepts=0,
        )
    )


def test_embedder_default_without_calibration(tmp_path: Path, models: Any) -> None:
    embedder = models.embedder
    active = thresholds(Settings(data_dir=tmp_path), embedder)
    assert (active.verify, active.identify) == (
        embedder.default_thresholds.verify,
        embedder.default_thresholds.identify,
    )
    assert active.verify_far is None and active.source == "embedder default"
    assert active.identify_far_method is None


def test_calibration_wins_over_default_and_reports_far(tmp_path: Path, models: Any) -> None:
    calibrate(tmp_path, models.embedder.version)
    calibrate(tmp_path, "some-other-model@123")
    active = thresholds(Settings(data_dir=tmp_path), models.embedder)
    assert (active.verify, active.verify_far) == (0.33, 0.001)
    # 5000 impostor scores vouch for 6e-4 per comparison; over 50 subjects that is
    # 1 - (1 - 6e-4)^50 = 0.0296, more than the 0.01 the identify threshold aimed at.
    assert (active.identify, active.identify_far) == (0.44, 0.0296)
    assert active.source.startswith("calibrated")
    assert active.identify_far_method == "stranger set"  # says how identify_far was found


def test_settings_override_a_calibration(tmp_path: Path, models: Any) -> None:
    calibrate(tmp_path, models.embedder.version)
    active = thresholds(Settings(data_dir=tmp_path, verify_threshold=0.5), models.embedder)
    assert (active.verify, active.verify_far) == (0.5, None)
    assert (active.identify, active.identify_far) == (0.44, 0.0296)
    assert active.source.startswith("verify: settings; identify: calibrated")
    overridden = Settings(data_dir=tmp_path, identify_threshold=0.5)
    assert thresholds(overridden, models.embedder).identify_far_method is None


def test_identify_far_is_stated_for_the_gallery_as_it_is(tmp_path: Path, models: Any) -> None:
    # Calibrated for 0.01 at 50 faces (pairs count faces): p = 1 - 0.99^(1/50) = 2.01e-4.
    calibrate(tmp_path, models.embedder.version)
    settings = Settings(data_dir=tmp_path)

    def stated(faces: int) -> tuple[float | None, int | None]:
        counts = GalleryCounts(faces=faces, subjects=faces // 3)
        active = thresholds(settings, models.embedder, counts)
        assert active.identify == 0.44  # the threshold stays; what it means changes
        return active.identify_far, active.identify_far_gallery_size

    # As calibrated, the vouching floor (6e-4 per comparison) governs, as above.
    assert stated(50) == (0.0296, 50)
    # 100x the faces: 1 - (1 - 2.01e-4)^5000 = 0.634, and the floor, 1 - (0.05^(1/5000))^5000
    # = 0.95, is higher still.
    far, size = stated(5000)
    assert (far, size) == (0.95, 5000)
    # Without a count (the CLI), the calibration's own N.
    assert thresholds(settings, models.embedder).identify_far_gallery_size == 50

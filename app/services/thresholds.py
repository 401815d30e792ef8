"""The active thresholds: settings override, else a stored calibration, else the embedder's."""

from __future__ import annotations

from app.config import Settings
from app.pipeline.embedders import Embedder
from app.services.calibration import CalibrationStore, vouched_far
from app.state import AppState, Runtime, Thresholds


def active_thresholds(settings: Settings, embedder: Embedder) -> Thresholds:
    """Pick each threshold by precedence; a FAR is reported only for a calibrated threshold."""
    defaults = embedder.default_thresholds
    calibration = CalibrationStore(settings.data_dir).load(embedder.version)
    verify, verify_far, verify_source = defaults.verify, None, "embedder default"
    identify, identify_far, identify_source = defaults.identify, None, "embedder default"
    if calibration is not None:
        stamp = f"calibrated {calibration.created_at:%Y-%m-%d} from {calibration.source}"
        # The FARs stated are the targets, unless too few impostor scores were measured to
        # vouch for them: a target of 1e-9 on 143 pairs is stated as 3/143.
        verify, verify_far, verify_source = (
            calibration.verify_threshold,
            vouched_far(calibration.verify_far, calibration.impostors),
            stamp,
        )
        identify, identify_far, identify_source = (
            calibration.identify_threshold,
            vouched_far(
                calibration.identify_far,
                calibration.identify_scores or calibration.impostors,
                calibration.gallery_size,
            ),
            stamp,
        )
    if settings.verify_threshold is not None:
        verify, verify_far, verify_source = settings.verify_threshold, None, "settings"
    if settings.identify_threshold is not None:
        identify, identify_far, identify_source = settings.identify_threshold, None, "settings"
    source = (
        verify_source
        if verify_source == identify_source
        else f"verify: {verify_source}; identify: {identify_source}"
    )
    return Thresholds(
        verify=verify,
        identify=identify,
        verify_far=verify_far,
        identify_far=identify_far,
        source=source,
    )


def refresh_thresholds(state: AppState, model_version: str) -> Runtime | None:
    """Re-read the serving runtime's thresholds if it serves `model_version`.

    Call it under state.write_lock, which a model swap holds while it replaces the runtime.
    Returns the refreshed runtime, or None when another version serves (or none yet).
    """
    runtime = state.runtime
    if runtime is None or runtime.model_version != model_version:
        return None
    runtime.thresholds = active_thresholds(state.settings, runtime.pipeline.embedder)
    return runtime

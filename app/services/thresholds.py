"""The active thresholds: settings override, else a stored calibration, else the embedder's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import ModelError
from app.gallery import repository
from app.pipeline.embedders import Embedder
from app.services.calibration import Calibration, CalibrationStore
from app.services.calibration_import import file_stamp, import_legacy_file
from app.services.far_bounds import stated_identify_far, stated_verify_far
from app.state import AppState, Runtime, Thresholds


@dataclass(frozen=True)
class GalleryCounts:
    """What identify searches now: the N a stranger's chance of a match grows with."""

    faces: int
    subjects: int  # with at least one face


def count_gallery(sessions: sessionmaker[Session]) -> GalleryCounts:
    with sessions() as session:
        return GalleryCounts(
            faces=repository.count_faces(session),
            subjects=repository.count_subjects_with_faces(session),
        )


def active_thresholds(
    settings: Settings,
    sessions: sessionmaker[Session],
    embedder: Embedder,
    gallery: GalleryCounts | None = None,
) -> Thresholds:
    """Pick each threshold by precedence; a FAR is reported only for a calibrated threshold.
    With `gallery`, identify's FAR is stated for the gallery as it is, not as calibrated.
    ModelError when the stored calibration, or an older release's file, cannot be read."""
    import_legacy_file(settings.data_dir, sessions)
    calibration = CalibrationStore(sessions).load(embedder.version)
    return thresholds_from(settings, embedder, calibration, gallery)


def calibration_stamp(
    settings: Settings, sessions: sessionmaker[Session], model_version: str
) -> tuple[object, ...]:
    """Changes whenever the calibration of `model_version` may have: when its row was saved,
    and an older release's calibration.json, fixed or removed by hand."""
    stored = CalibrationStore(sessions).stamp(model_version)
    return model_version, stored, file_stamp(settings.data_dir)


def thresholds_from(
    settings: Settings,
    embedder: Embedder,
    calibration: Calibration | None,
    gallery: GalleryCounts | None = None,
) -> Thresholds:
    """active_thresholds with `calibration` given (None: the defaults and settings only)."""
    defaults = embedder.default_thresholds
    verify, verify_far, verify_source = defaults.verify, None, "embedder default"
    identify, identify_far, identify_source = defaults.identify, None, "embedder default"
    identify_size = identify_method = None
    if calibration is not None:
        stamp = f"calibrated {calibration.created_at:%Y-%m-%d} from {calibration.source}"
        # The FARs stated are the targets, but never below the 95% upper bound of what the
        # impostor scores measured: a target of 1e-9 on 143 pairs is stated as 0.0208.
        verify, verify_far, verify_source = (
            calibration.verify_threshold,
            stated_verify_far(calibration),
            stamp,
        )
        identify_size = _live_size(calibration, gallery)
        identify, identify_far, identify_source = (
            calibration.identify_threshold,
            stated_identify_far(calibration, identify_size),
            stamp,
        )
        identify_method = calibration.method
    if settings.verify_threshold is not None:
        verify, verify_far, verify_source = settings.verify_threshold, None, "settings"
    if settings.identify_threshold is not None:
        identify, identify_far, identify_source = settings.identify_threshold, None, "settings"
        identify_size = identify_method = None
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
        identify_far_gallery_size=identify_size,
        identify_far_method=identify_method,
    )


def _live_size(calibration: Calibration, gallery: GalleryCounts | None) -> int:
    """N now, counted as the calibration counted it: each probe's best score per subject
    for a gallery calibration, single face pairs for one from pairs."""
    if gallery is None:
        return calibration.gallery_size
    live = gallery.subjects if calibration.source == "gallery" else gallery.faces
    return max(1, live)


def refresh_thresholds(
    state: AppState, model_version: str, gallery: GalleryCounts | None = None
) -> Runtime | None:
    """Re-read the serving runtime's thresholds if it serves `model_version`, for the
    gallery as `gallery` counts it (counted here when None).

    Call it under state.write_lock, which a model swap holds while it replaces the runtime.
    Returns the refreshed runtime, or None when another version serves (or none yet).
    """
    runtime = state.runtime
    if runtime is None or runtime.model_version != model_version:
        return None
    counts = gallery if gallery is not None else count_gallery(state.sessions)
    # Taken before the read: a calibration saved meanwhile is then seen at the next check.
    stamp = calibration_stamp(state.settings, state.sessions, model_version)
    try:
        thresholds = active_thresholds(
            state.settings, state.sessions, runtime.pipeline.embedder, counts
        )
    except ModelError:
        runtime.calibration_stamp = stamp  # unreadable as it stands: no retry until it changes
        raise
    # Any other failure (the database away) leaves the old stamp: the next check retries.
    runtime.thresholds, runtime.calibration_stamp = thresholds, stamp
    runtime.calibration_error = None  # readable (or gone) again
    return runtime

"""What /v1/info reports: model, thresholds, index and gallery sizes, versions."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from app.gallery import repository
from app.schemas.info import Info, ThresholdsPublic
from app.state import AppState

_PACKAGES = ("face-service", "torch", "facenet-pytorch", "faiss-cpu", "fastapi", "onnx2torch")


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def service_info(state: AppState) -> Info:
    runtime = state.runtime
    with state.sessions() as session:
        subjects, faces = repository.count_subjects(session), repository.count_faces(session)
    embedder = runtime.pipeline.embedder if runtime else None
    # Not ready while the active model cannot be loaded here: it serves none (503), as
    # /v1/ready says; model_version stays the one it holds.
    ready = runtime is not None and state.model_error is None
    # None while decisions are paused (the stored calibration unreadable): none serve.
    serving = runtime if ready else None
    thresholds = serving.thresholds if serving and serving.calibration_error is None else None
    return Info(
        version=_versions()["face-service"],
        ready=ready,
        embedder=embedder.name if embedder else None,
        model_version=embedder.version if embedder else None,
        device=str(embedder.device) if embedder else None,
        precision=embedder.precision_name if embedder else None,
        thresholds=ThresholdsPublic(**vars(thresholds)) if thresholds else None,
        licence=embedder.licence if embedder else None,
        index_type=state.settings.index_type,
        index_size=len(runtime.index) if runtime else None,
        index_how=runtime.index_how if runtime else None,
        subjects=subjects,
        faces=faces,
        store_crops=state.settings.store_crops,
        auth_enabled=state.keys.enabled,
        versions=_versions(),
    )

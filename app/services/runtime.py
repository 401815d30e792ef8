"""Builds the model-dependent runtime: models, thresholds, and the reconciled index."""

from __future__ import annotations

import logging
from collections.abc import Callable

import faiss
import torch
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import ModelError
from app.pipeline.analyzer import FacePipeline, PipelineObserver
from app.pipeline.batched_pipeline import BatchingPipeline
from app.pipeline.types import QualityLimits
from app.services.active_model import with_active_embedder
from app.services.loaded_models import Models, load_models, saved_traces, warm_up
from app.services.model_index import open_model_index
from app.services.threads import batch_max_size, inference_workers, torch_threads, uses_gpu
from app.services.thresholds import (
    active_thresholds,
    calibration_stamp,
    count_gallery,
    thresholds_from,
)
from app.state import Runtime

log = logging.getLogger(__name__)


def configure_threads(settings: Settings, serving: bool = False) -> None:
    # Torch and FAISS each bring an OpenMP pool; on small machines they spin against each other.
    torch.set_num_threads(torch_threads(settings, serving))
    faiss.omp_set_num_threads(1)


def quality_limits(settings: Settings) -> QualityLimits:
    return QualityLimits(
        min_face_size=settings.min_face_size,
        min_probability=settings.min_detection_probability,
        min_blur=settings.min_blur_variance,
    )


def build_pipeline(
    settings: Settings,
    models: Models,
    observer: PipelineObserver | None = None,
    callers: Callable[[], int] | None = None,
) -> FacePipeline:
    """A micro-batching pipeline unless the batch size is 1. `callers` counts the requests
    running on the inference threads (InferencePool.running); without it, batches assume
    every thread may be busy."""
    limits = quality_limits(settings)
    gpu = uses_gpu(settings.device)
    workers = inference_workers(settings, gpu)
    max_size = batch_max_size(settings, gpu)
    if max_size == 1:
        return FacePipeline(models.detector, models.embedder, limits, observer=observer)
    return BatchingPipeline(
        models.detector,
        models.embedder,
        limits,
        observer,
        max_size=max_size,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        # Every request runs on an inference thread, so no more can queue for one batch.
        callers=callers or (lambda: workers),
        batch_detect=settings.batch_detect,
    )


def build_runtime(
    settings: Settings,
    sessions: sessionmaker[Session],
    models: Models | None,
    observer: PipelineObserver | None = None,
    callers: Callable[[], int] | None = None,
    pause_on_bad_calibration: bool = False,
) -> Runtime:
    """The serving runtime. An unreadable calibration raises ModelError, unless
    `pause_on_bad_calibration` (start-up, with nothing serving yet): then the runtime holds
    the defaults and refuses decisions (Runtime.calibration_error). A model swap keeps the
    raise, so the model serving stays, with the thresholds it has."""
    configure_threads(settings, serving=True)
    if models is not None:  # a model swap: the detector serves already
        return _runtime(
            settings, sessions, models, observer, callers, pause_on_bad_calibration, False
        )
    models = load_models(settings, serving=True)
    try:
        runtime = _runtime(
            settings, sessions, models, observer, callers, pause_on_bad_calibration, True
        )
        # The detection process loaded meanwhile, on the other core, while this one loaded
        # the index; one that fails to start fails the start-up here.
        models.detector.wait_ready()
    except BaseException:
        # Not left running beside a service that reports the error; killed at once, so the
        # error is not reported seconds late (the child is mid-import, with nothing to do).
        models.detector.close(wait_s=0)
        raise
    return runtime


def _runtime(
    settings: Settings,
    sessions: sessionmaker[Session],
    models: Models,
    observer: PipelineObserver | None,
    callers: Callable[[], int] | None,
    pause_on_bad_calibration: bool,
    warm_detector: bool,
) -> Runtime:
    models = with_active_embedder(settings, sessions, models)
    models.embedder.freeze_for_serving(saved_traces(settings))  # traced now, not in a request
    if settings.gpu_warmup:
        # The embedder that serves, after the swap to the active model (the packaged one
        # was warmed before, and a fine-tuned one served cold); MTCNN once, at start-up.
        warm_up(models, detector=warm_detector)
    pipeline = build_pipeline(settings, models, observer, callers)
    embedder = models.embedder
    index, how = open_model_index(settings, sessions, embedder.version, embedder.embedding_dim)
    calibration_error = None
    stamp = calibration_stamp(settings, sessions, embedder.version)
    try:
        thresholds = active_thresholds(settings, sessions, embedder, count_gallery(sessions))
    except ModelError as error:  # calibration unreadable: start, but decide nothing
        if not pause_on_bad_calibration:
            raise
        log.error("%s; verify and identify answer 503 until then", error.message)
        thresholds = thresholds_from(settings, embedder, None)
        calibration_error = error.message
    return Runtime(
        pipeline=pipeline,
        index=index,
        thresholds=thresholds,
        index_how=how,
        calibration_error=calibration_error,
        calibration_stamp=stamp,
    )

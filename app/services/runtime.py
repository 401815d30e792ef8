"""Builds the model-dependent runtime: models, thresholds, and the reconciled index."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import ModelError
from app.gallery import embeddings_repo
from app.index import FaceIndex, index_path, open_index
from app.pipeline.analyzer import FacePipeline, PipelineObserver
from app.pipeline.batched_pipeline import BatchingPipeline
from app.pipeline.detect import FaceDetector
from app.pipeline.detect_process import DetectionProcess
from app.pipeline.embedders import Embedder, create_embedder, resolve_device, resolve_embedder_name
from app.pipeline.types import QualityLimits
from app.services.active_model import with_active_embedder
from app.services.early_start import detection_args, take_early
from app.services.threads import batch_max_size, inference_workers, torch_threads, uses_gpu
from app.services.thresholds import active_thresholds, count_gallery, thresholds_from
from app.state import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Models:
    """Loaded models; tests build one per session and hand it to every app they create."""

    detector: FaceDetector
    embedder: Embedder


def settle_heap() -> None:
    """Exempt what start-up allocated (libraries, models, the index) from garbage collection.

    A full collection walks every tracked object. After loading torch and the models that
    took 100-270 ms, stalling every thread, and showed as the tail of p99 latency; frozen
    objects are skipped. Collect first, so that no garbage is frozen.
    """
    gc.collect()
    gc.freeze()


def resettle_heap() -> None:
    """After a model swap: let the collector reach the old runtime, then freeze again."""
    if gc.get_freeze_count():  # only where settle_heap ran: the service's own process
        gc.unfreeze()
        settle_heap()


def configure_threads(settings: Settings, serving: bool = False) -> None:
    # Torch and FAISS each bring an OpenMP pool; on small machines they spin against each other.
    torch.set_num_threads(torch_threads(settings, serving))
    faiss.omp_set_num_threads(1)


def load_models(settings: Settings, serving: bool = False) -> Models:
    """The detector and embedder; `serving` (the service, not a command) may give detection
    a process of its own."""
    device = resolve_device(settings.device)
    process = detection_process(settings, device) if serving else None
    if process is not None:
        process.launch()  # it loads MTCNN while this process loads the embedder
    name = resolve_embedder_name(settings.embedder, settings.models_dir)
    log.info("loading embedder %s on %s", name, device)
    embedder = create_embedder(
        name,
        settings.models_dir,
        device,
        precision=settings.embed_precision,
        torchscript=settings.torchscript,
    )
    detector = FaceDetector(
        device,
        max_side=settings.detect_max_side,
        min_face_size=settings.min_face_size,
        # With a detection process, this copy of MTCNN never runs: no need to trace it.
        torchscript=settings.torchscript and process is None,
    )
    if process is not None:
        process.start()
        detector.run_in(process)
    log.info("embedder %s ready (version %s, %s)", name, embedder.version, embedder.precision_name)
    if "non-commercial" in embedder.licence.lower():
        log.warning("%s weights are licensed for non-commercial use: %s", name, embedder.licence)
    models = Models(detector=detector, embedder=embedder)
    if serving and settings.gpu_warmup:
        warm_up(models)
    return models


def warm_up(models: Models) -> None:
    """Meets every padded batch size once on a GPU (app/pipeline/shape_buckets.py)."""
    start = time.perf_counter()
    sizes = models.embedder.warm_up()
    passes = models.detector.warm_up()
    if sizes or passes:
        log.info(
            "warmed up %d embedder and %d MTCNN batch sizes in %.1f s",
            len(sizes),
            len(passes),
            time.perf_counter() - start,
        )


def detection_process(settings: Settings, device: torch.device) -> DetectionProcess | None:
    """The child process MTCNN runs in, where the setting asks for one (CPU only): the one
    `python -m app serve` started early, if it fits (app/services/early_start.py)."""
    if not settings.detection_process or device.type != "cpu":
        take_early(None)
        return None
    args = detection_args(settings)
    return take_early(args) or DetectionProcess(*args)


def quality_limits(settings: Settings) -> QualityLimits:
    return QualityLimits(
        min_face_size=settings.min_face_size,
        min_probability=settings.min_detection_probability,
        min_blur=settings.min_blur_variance,
    )


def open_model_index(
    settings: Settings, sessions: sessionmaker[Session], model_version: str, dim: int
) -> tuple[FaceIndex, str]:
    with sessions() as session:
        db_ids = embeddings_repo.model_face_ids(session, model_version)

        def load_vectors(ids: np.ndarray) -> np.ndarray:
            return embeddings_repo.vectors_for(session, model_version, ids)

        index, report, how = open_index(
            settings.index_dir,
            model_version,
            settings.index_type,
            dim,
            db_ids,
            load_vectors,
            embeddings_repo.iter_vectors(session, model_version),
            # With background rebuilds on, start serving at once and rebuild afterwards.
            rebuild_tombstoned=not settings.index_auto_rebuild,
        )
    log.info(
        "index %s: %s, %d vectors (+%d / -%d reconciled)",
        model_version,
        how,
        report.total,
        report.added,
        report.removed,
    )
    if how != "loaded" or report.added or report.removed:
        save_index(settings, index)
    return index, how


def save_index(settings: Settings, index: FaceIndex) -> None:
    index.save(index_path(settings.index_dir, index.model_version, settings.index_type))


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
    """The serving runtime. An unreadable calibration.json raises ModelError, unless
    `pause_on_bad_calibration` (start-up, with nothing serving yet): then the runtime holds
    the defaults and refuses decisions (Runtime.calibration_error). A model swap keeps the
    raise, so the model serving stays, with the thresholds it has."""
    configure_threads(settings, serving=True)
    models = models or load_models(settings, serving=True)
    models = with_active_embedder(settings, sessions, models)
    models.embedder.inference_runner()  # trace the serving model now, not in a request
    pipeline = build_pipeline(settings, models, observer, callers)
    embedder = models.embedder
    index, how = open_model_index(settings, sessions, embedder.version, embedder.embedding_dim)
    calibration_error = None
    try:
        thresholds = active_thresholds(settings, embedder, count_gallery(sessions))
    except ModelError as error:  # calibration.json unreadable: start, but decide nothing
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
    )

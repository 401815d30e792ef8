"""The detector and embedder, loaded once per process: detection in a child where it pays."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from app.config import Settings
from app.pipeline.detect import FaceDetector
from app.pipeline.detect_process import DetectionProcess
from app.pipeline.embedders import Embedder, create_embedder, resolve_device, resolve_embedder_name
from app.pipeline.embedders.saved_traces import SavedTraces
from app.services.early_start import detection_args, take_early

log = logging.getLogger(__name__)

# Under FACE_DATA_DIR (app/pipeline/embedders/saved_traces.py).
TRACES_DIR = "cache/torchscript"


@dataclass(frozen=True)
class Models:
    """Loaded models; tests build one per session and hand it to every app they create."""

    detector: FaceDetector
    embedder: Embedder


def load_models(settings: Settings, serving: bool = False) -> Models:
    """The detector and embedder; `serving` (the service, not a command) may give detection
    a process of its own, which may still be loading (FaceDetector.wait_ready), and leaves
    the packaged network unbuilt until it serves (see below)."""
    device = resolve_device(settings.device)
    process = detection_process(settings, device) if serving else None
    if process is not None:
        process.launch()  # it loads MTCNN while this process loads the embedder and index
    try:
        name = resolve_embedder_name(settings.embedder, settings.models_dir)
        log.info("loading embedder %s on %s", name, device)
        # The service builds the packaged network (if no saved copy serves) only once it
        # knows this model serves: with a fine-tuned one active it never does, and its
        # weights file has been checksummed (a network that will not build fails the
        # start-up at freeze_for_serving instead of here).
        embedder = create_embedder(
            name,
            settings.models_dir,
            device,
            precision=settings.embed_precision,
            torchscript=settings.torchscript,
            saved=saved_traces(settings) if serving else None,
            build=not serving,
        )
        # With a detection process, this process builds no MTCNN of its own (nor imports
        # facenet-pytorch for it).
        detector = FaceDetector(
            device,
            max_side=settings.detect_max_side,
            min_face_size=settings.min_face_size,
            torchscript=settings.torchscript,
            process=process,
        )
    except BaseException:
        if process is not None:
            process.close(wait_s=0)  # as build_runtime does: killed, not waited for
        raise
    log.info("embedder %s ready (version %s, %s)", name, embedder.version, embedder.precision_name)
    if "non-commercial" in embedder.licence.lower():
        log.warning("%s weights are licensed for non-commercial use: %s", name, embedder.licence)
    return Models(detector=detector, embedder=embedder)


def saved_traces(settings: Settings) -> SavedTraces | None:
    """Where the service keeps its embedders' TorchScript copies between starts: under the
    data folder, which it may write (the models folder may be read-only); never backed up."""
    if not settings.torchscript:
        return None
    return SavedTraces(settings.data_dir / TRACES_DIR)


def warm_up(models: Models, detector: bool = True) -> None:
    """Meets every padded batch size once on a GPU (app/pipeline/shape_buckets.py): the
    embedder's, and with `detector` MTCNN's."""
    start = time.perf_counter()
    sizes = models.embedder.warm_up()
    passes = models.detector.warm_up() if detector else []
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

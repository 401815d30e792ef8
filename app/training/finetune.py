"""One fine-tuning run: load, evaluate, train, evaluate again, decide, and maybe promote."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import models_repo
from app.pipeline.analyzer import FacePipeline
from app.pipeline.detect import FaceDetector
from app.pipeline.embedders import Embedder, resolve_device, resolve_embedder_name
from app.schemas.finetune import BeforeAfter, FinetuneParams, JobResult
from app.services.active_model import desired_version, load_version
from app.services.runtime import configure_threads, quality_limits
from app.training.dataset import load_gallery_faces
from app.training.evaluate import (
    ExternalPairs,
    decide_promotion,
    embed_images,
    external_metrics,
    load_external,
    pair_metrics,
)
from app.training.probes import probe_change, probe_outcomes
from app.training.promote import promote
from app.training.split import check_fraction, split_faces, training_only, validation_pairs
from app.training.tracker import JobTracker
from app.training.trainer import train_network


def run_finetune(
    settings: Settings, sessions: sessionmaker[Session], params: FinetuneParams, tracker: JobTracker
) -> JobResult:
    """Everything a job does once running, up to its final commit; JobCancelled on a stop."""
    configure_threads(settings)
    clock: dict[str, float] = {}
    start = time.perf_counter()
    tracker.update(force=True, phase="loading", epochs=params.epochs)
    device = resolve_device(params.device)
    name = resolve_embedder_name(settings.embedder, settings.models_dir)
    with sessions.begin() as session:
        embedder = load_version(settings, desired_version(session, settings, name), device)
        check_fraction(session, embedder.version, params.validation_fraction)
    base_version = embedder.version
    faces = load_gallery_faces(sessions, embedder.template, tracker.check)
    external = _load_external(settings, embedder, tracker.check)
    clock["load"] = _lap(start, clock)

    tracker.check()
    tracker.update(force=True, phase="evaluating")
    # Embedded once: the split groups near-duplicates by these vectors, and they are the
    # "before" model's too.
    vectors = embed_images(embedder.module, embedder, faces.images, tracker.check)
    split = split_faces(faces.face_ids, faces.labels, vectors, params.validation_fraction)
    first, second, same = validation_pairs(faces.labels, split.validation)
    scores_before = np.sum(vectors[first] * vectors[second], axis=1)
    validation_before = pair_metrics(scores_before, same)
    probes_before = probe_outcomes(scores_before, same, first, second)
    external_before = (
        external_metrics(embedder.module, embedder, external, tracker.check) if external else None
    )
    clock["evaluate_before"] = _lap(start, clock)
    # After training: the same evaluation again, then re-embedding the whole gallery.
    tracker.tail_estimate_s = clock["evaluate_before"] * 2

    tracker.check()
    tracker.update(force=True, phase="training")
    tracker.start_training_clock()
    training, everything = training_only(faces, split)
    summary = train_network(
        embedder,
        training,
        everything,
        vectors[split.train],
        params,
        tracker.on_train_step,
        tracker.should_stop,
        settings.finetune_fail_after_steps,
    )
    clock["train"] = _lap(start, clock)

    tracker.update(force=True, phase="evaluating", eta_s=tracker.tail_estimate_s)
    tuned = embed_images(embedder.module, embedder, faces.images, tracker.check)
    scores_after = np.sum(tuned[first] * tuned[second], axis=1)
    validation = BeforeAfter(before=validation_before, after=pair_metrics(scores_after, same))
    # Gains are counted in held-out faces, not pairs: one face's pairs rise and fall together.
    probes = probe_change(probes_before, probe_outcomes(scores_after, same, first, second))
    external_result = None
    if external is not None and external_before is not None:
        after = external_metrics(embedder.module, embedder, external, tracker.check)
        external_result = BeforeAfter(before=external_before, after=after)
    clock["evaluate_after"] = _lap(start, clock)
    decision = decide_promotion(
        validation, external_result, settings.finetune_external_tolerance, params.force, probes
    )
    with sessions() as session:
        without_crops = models_repo.count_without_crop(session)
    result = JobResult(
        base_model=base_version,
        validation=validation,
        external=external_result,
        promotion=decision,
        dataset={
            "subjects": faces.subjects,
            "train_faces": len(split.train),
            "validation_faces": len(split.validation),
            "set_aside_faces": len(split.set_aside),
            "validation_probes": probes.probes,
        },
        train=summary,
        faces_without_crops=without_crops,
        durations_s=clock,
    )
    if decision.promote:
        return promote(settings, sessions, tracker, embedder, result, params, start)
    result.durations_s["total"] = round(time.perf_counter() - start, 2)
    tracker.succeed(result)
    return result


def _load_external(
    settings: Settings, embedder: Embedder, check: Callable[[], None]
) -> ExternalPairs | None:
    if settings.finetune_external_pairs is None:
        return None
    detector = FaceDetector(
        embedder.device,
        max_side=settings.detect_max_side,
        min_face_size=settings.min_face_size,
        torchscript=settings.torchscript,
    )
    pipeline = FacePipeline(detector, embedder, quality_limits(settings))
    return load_external(
        pipeline,
        settings.finetune_external_pairs,
        settings.finetune_external_root,
        settings.max_image_pixels,
        check,
    )


def _lap(start: float, clock: dict[str, float]) -> float:
    """Seconds since the end of the previous phase."""
    return round(time.perf_counter() - start - sum(clock.values()), 2)

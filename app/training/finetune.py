"""One fine-tuning run: load, evaluate, train, evaluate again, decide, and maybe promote."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import InvalidRequest
from app.gallery import models_repo
from app.pipeline.analyzer import FacePipeline
from app.pipeline.detect import FaceDetector
from app.pipeline.embedders import Embedder, resolve_device, resolve_embedder_name
from app.schemas.finetune import BeforeAfter, FinetuneParams, JobResult, PromotionDecision
from app.services.active_model import desired_version, load_version
from app.services.reembed import embed_missing
from app.services.runtime import configure_threads, quality_limits
from app.training.checkpoints import save_checkpoint
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
from app.training.split import (
    lineage_validation_fraction,
    split_faces,
    training_only,
    validation_pairs,
)
from app.training.tracker import JobTracker
from app.training.trainer import train_network

FINETUNED_DIR = "finetuned"


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
        _check_fraction(session, embedder.version, params.validation_fraction)
    base_version = embedder.version
    faces = load_gallery_faces(sessions, embedder.template)
    external = _load_external(settings, embedder)
    clock["load"] = _lap(start, clock)

    tracker.check()
    tracker.update(force=True, phase="evaluating")
    # Embedded once: the split groups near-duplicates by these vectors, and they are the
    # "before" model's too.
    vectors = embed_images(embedder.module, embedder, faces.images)
    split = split_faces(faces.face_ids, faces.labels, vectors, params.validation_fraction)
    first, second, same = validation_pairs(faces.labels, split.validation)
    scores_before = np.sum(vectors[first] * vectors[second], axis=1)
    validation_before = pair_metrics(scores_before, same)
    probes_before = probe_outcomes(scores_before, same, first, second)
    external_before = external_metrics(embedder.module, embedder, external) if external else None
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
    tuned = embed_images(embedder.module, embedder, faces.images)
    scores_after = np.sum(tuned[first] * tuned[second], axis=1)
    validation = BeforeAfter(before=validation_before, after=pair_metrics(scores_after, same))
    # Gains are counted in held-out faces, not pairs: one face's pairs rise and fall together.
    probes = probe_change(probes_before, probe_outcomes(scores_after, same, first, second))
    external_result = None
    if external is not None and external_before is not None:
        after = external_metrics(embedder.module, embedder, external)
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
        return _promote(settings, sessions, tracker, embedder, result, params, start)
    result.durations_s["total"] = round(time.perf_counter() - start, 2)
    tracker.succeed(result)
    return result


def _promote(
    settings: Settings,
    sessions: sessionmaker[Session],
    tracker: JobTracker,
    trained: Embedder,
    result: JobResult,
    params: FinetuneParams,
    job_started: float,
) -> JobResult:
    """Checkpoint, re-embed every stored crop, then activate in the job's final commit."""
    started = time.perf_counter()
    relative = Path(FINETUNED_DIR) / tracker.job_id
    directory = settings.models_dir / relative
    state = {key: value.detach().cpu() for key, value in trained.module.state_dict().items()}
    metrics = {"validation": result.validation.model_dump()}
    if result.external is not None:
        metrics["external"] = result.external.model_dump()
    metadata = {
        "embedder": trained.name,
        "base_model": result.base_model,
        "job_id": tracker.job_id,
        "hyperparameters": params.model_dump(),
        "metrics": metrics,
    }
    info = save_checkpoint(directory, state, metadata)
    model = type(trained)(
        trained.module,
        trained.device,
        info.sha256,
        trained.default_thresholds,
        trained.precision,
        trained.torchscript,
    )
    with sessions() as session:
        known = models_repo.find_model(session, model.version)
    if known is not None:
        # Training changed no weight (a tiny learning rate, say): the "new" model is one
        # the database has, perhaps the one serving. Its vectors are not this job's to
        # write, nor, on a cancel, to delete.
        shutil.rmtree(directory, ignore_errors=True)
        unchanged = PromotionDecision(
            promote=False,
            rule="weights_unchanged",
            reason=f"training left the weights as they were: they are {model.version}'s",
            tolerance_points=result.promotion.tolerance_points,
        )
        result = result.model_copy(update={"promotion": unchanged})
        result.durations_s["total"] = round(time.perf_counter() - job_started, 2)
        tracker.succeed(result)
        return result
    try:
        with sessions() as session:
            total = models_repo.count_crops_missing(session, model.version)
        tracker.update(force=True, phase="re-embedding", to_reembed=total, eta_s=None)
        done = embed_missing(
            sessions, model, check=tracker.check, on_batch=lambda n: tracker.update(reembedded=n)
        )
        checkpoint = relative.as_posix()
        result = result.model_copy(
            update={"model_id": model.version, "checkpoint": checkpoint, "reembedded": done}
        )
        result.durations_s["reembed"] = round(time.perf_counter() - started, 2)
        result.durations_s["total"] = round(time.perf_counter() - job_started, 2)

        def activate(session: Session) -> None:
            models_repo.ensure_model(
                session,
                model.version,
                model.name,
                info.sha256,
                weights_path=relative / info.weights_path.name,
                base_version=result.base_model,
                metrics=metrics,
                job_id=tracker.job_id,
            )
            models_repo.activate(session, model.version)

        tracker.succeed(result, within=activate)
    except BaseException:
        # Not promoted after all (cancelled or failed): leave nothing behind. Unless the
        # activation did commit, and a signal (SIGTERM raises SystemExit anywhere) struck
        # just after: the database then names this model active, and its files must stay.
        with sessions.begin() as session:
            discarded = models_repo.discard_unregistered(session, model.version)
        if discarded:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return result


def _check_fraction(session: Session, version: str, fraction: float) -> None:
    """Refuse a validation_fraction larger than any used to train `version` or its bases:
    the extra held-out faces would be faces one of them trained on."""
    ceiling = lineage_validation_fraction(session, version)
    if ceiling is not None and fraction > ceiling:
        raise InvalidRequest(
            f"validation_fraction {fraction} is larger than {ceiling}, used to fine-tune "
            f"{version} or a model it was fine-tuned from, so validation would include faces "
            f"it trained on. Use at most {ceiling}, or activate the packaged model first.",
            {"validation_fraction": fraction, "lineage_validation_fraction": ceiling},
        )


def _load_external(settings: Settings, embedder: Embedder) -> ExternalPairs | None:
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
    )


def _lap(start: float, clock: dict[str, float]) -> float:
    """Seconds since the end of the previous phase."""
    return round(time.perf_counter() - start - sum(clock.values()), 2)

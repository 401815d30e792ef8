"""Promoting a fine-tuned model: checkpoint, re-embed every stored crop, then activate."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import models_repo
from app.pipeline.embedders import Embedder
from app.schemas.finetune import FinetuneParams, JobResult, PromotionDecision
from app.services.reembed import embed_missing
from app.training.checkpoints import save_checkpoint
from app.training.tracker import JobTracker

# Under the models folder: one folder per promoted job, named by its id.
FINETUNED_DIR = "finetuned"


def promote(
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
            reason=(
                "training left the weights as they were"
                if model.version == result.base_model
                else f"training produced weights the database already has: {model.version}'s"
            ),
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

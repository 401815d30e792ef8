"""Deleting a model version: what refuses it, and the files it leaves once its row is gone."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import NoReturn, get_args

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import ModelInUse
from app.gallery import jobs_repo, models_repo
from app.gallery.orm import ModelVersion
from app.index import IndexKind, index_path
from app.index.files import sidecar_path

log = logging.getLogger(__name__)


def refuse_deletion(session: Session, row: ModelVersion, serving: str) -> None:
    """Raise ModelInUse when anything still needs `row`: deleting it would break it."""
    model_id = row.id
    if row.weights_path is None:
        _refuse(model_id, "packaged", f"Model {model_id} is {row.embedder}'s packaged weights.")
    active = models_repo.active_model(session, row.embedder)
    if active is not None and active.id == model_id:
        _refuse(model_id, "active", f"Model {model_id} is active; activate another first.")
    if model_id == serving:
        _refuse(model_id, "serving", f"Model {model_id} still serves; wait for the swap.")
    job = jobs_repo.active_job(session)
    if job is not None:
        # A job records its base model only when it ends, so any version may be it.
        message = f"Job {job.id} is {job.state} and may be fine-tuning from {model_id}."
        _refuse(model_id, "job_active", message, job_id=job.id)
    derived = models_repo.derived_versions(session, model_id)
    if derived:
        # Their validation-fraction lineage (training/split.py) walks through this row.
        message = f"Model {model_id} is the base of {', '.join(derived)}; delete those first."
        _refuse(model_id, "has_derived_versions", message, derived=derived)


def refuse_changed(session: Session, model_id: str, serving: str) -> NoReturn:
    """Raise why the database refused a deletion that `refuse_deletion` had allowed: what
    changed in between (ModelNotFound when another delete won)."""
    session.expire_all()
    refuse_deletion(session, models_repo.get_model(session, model_id), serving)
    # Only when the change was undone meanwhile (on PostgreSQL, where each statement reads
    # what was committed before it), or two versions were activated at the same instant.
    message = f"Model {model_id} changed while it was being deleted; try again."
    _refuse(model_id, "changed", message)


def _refuse(model_id: str, reason: str, message: str, **details: object) -> NoReturn:
    raise ModelInUse(message, {"model_id": model_id, "reason": reason, **details})


def remove_files(settings: Settings, model_id: str, weights_path: str | None) -> None:
    """Best effort, after the row's deletion committed: what stays is unused, and start-up
    removes a checkpoint folder no model row names (training/supervisor.remove_leftovers)."""
    folder = checkpoint_folder(settings.models_dir, weights_path)
    if folder is not None:
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        else:
            folder.unlink(missing_ok=True)
        if folder.exists():
            log.warning("could not remove %s of deleted model %s", folder, model_id)
    for kind in get_args(IndexKind):  # the setting may have changed since it served
        saved = index_path(settings.index_dir, model_id, kind)
        for path in (saved, sidecar_path(saved)):
            for leftover in (path, path.with_name(path.name + ".tmp")):
                leftover.unlink(missing_ok=True)


def checkpoint_folder(models_dir: Path, weights_path: str | None) -> Path | None:
    """The folder under models/finetuned/ holding these weights; None for any other path
    (the packaged weights, or a path that leads, through `..` or a link, elsewhere)."""
    from app.training.promote import FINETUNED_DIR  # imports the pipeline: only when used

    if weights_path is None:
        return None
    root = (models_dir / FINETUNED_DIR).resolve()
    weights = (models_dir / weights_path).resolve()
    if weights == root or not weights.is_relative_to(root):
        return None
    return root / weights.relative_to(root).parts[0]

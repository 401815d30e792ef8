"""Which embedder version serves: the latest activated model row, else the packaged weights."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import FaceServiceError, ModelError
from app.gallery import models_repo
from app.gallery.orm import ModelVersion
from app.pipeline.embedders import Embedder, create_embedder, load_model_specs
from app.pipeline.embedders.saved_traces import SavedTraces
from app.services.loaded_models import saved_traces
from app.services.reembed import embed_missing

if TYPE_CHECKING:
    from app.services.loaded_models import Models

log = logging.getLogger(__name__)


def packaged_version(settings: Settings, name: str) -> str:
    """The version of `name`'s packaged weights (what Embedder.version will say)."""
    return f"{name}@{load_model_specs(settings.models_dir)[name].sha256[:12]}"


def register_packaged(session: Session, settings: Settings, name: str) -> ModelVersion:
    """The packaged weights' row, so model listings and rollbacks can name it."""
    sha256 = load_model_specs(settings.models_dir)[name].sha256
    return models_repo.ensure_model(session, packaged_version(settings, name), name, sha256)


def desired_version(session: Session, settings: Settings, name: str) -> ModelVersion:
    """The row that should serve `name`: the latest activated, else the packaged weights."""
    return models_repo.active_model(session, name) or register_packaged(session, settings, name)


def load_version(
    settings: Settings,
    row: ModelVersion,
    device: torch.device,
    saved: SavedTraces | None = None,
) -> Embedder:
    """Load (and checksum) the weights of one model row; `saved` for the service only
    (create_embedder)."""
    if row.weights_path is None:
        return create_embedder(
            row.embedder,
            settings.models_dir,
            device,
            precision=settings.embed_precision,
            torchscript=settings.torchscript,
            saved=saved,
        )
    weights = (settings.models_dir / row.weights_path).resolve()
    if not weights.is_relative_to(settings.models_dir.resolve()):
        raise ModelError(f"Model {row.id} names weights outside the models folder.")
    return create_embedder(
        row.embedder,
        settings.models_dir,
        device,
        weights_path=weights,
        expected_sha256=row.sha256,
        precision=settings.embed_precision,
        torchscript=settings.torchscript,
        saved=saved,
    )


def with_active_embedder(
    settings: Settings, sessions: sessionmaker[Session], models: Models
) -> Models:
    """`models` with the embedder version the database says should serve.

    Faces that kept a crop but lack a vector under that version (enrolled while another
    version served) are embedded first, so the index built next is complete.
    """
    embedder = models.embedder
    with sessions.begin() as session:
        register_packaged(session, settings, embedder.name)
        row = desired_version(session, settings, embedder.name)
    if row.id != embedder.version:
        try:
            embedder = load_version(settings, row, embedder.device, saved_traces(settings))
        except FaceServiceError as error:
            log.error("cannot load model %s (%s); serving %s", row.id, error, embedder.version)
    added = embed_missing(sessions, embedder)
    if added:
        log.info("embedded %d stored crops under %s", added, embedder.version)
    return replace(models, embedder=embedder)

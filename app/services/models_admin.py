"""Model versions for operators: list them with their metrics, choose which serves, delete."""

from __future__ import annotations

from app.errors import Conflict
from app.gallery import calibrations_repo, models_repo
from app.gallery.orm import ModelVersion
from app.schemas.finetune import ModelList, ModelPublic
from app.services import model_removal
from app.services.active_model import desired_version, register_packaged
from app.state import AppState


def _public(
    row: ModelVersion, active: str, serving: str | None, counts: dict[str, int]
) -> ModelPublic:
    return ModelPublic(
        id=row.id,
        embedder=row.embedder,
        base_version=row.base_version,
        sha256=row.sha256,
        weights_path=row.weights_path,
        metrics=row.metrics,
        job_id=row.job_id,
        created_at=row.created_at,
        activated_at=row.activated_at,
        active=row.id == active,
        serving=row.id == serving,
        embeddings=counts.get(row.id, 0),
    )


def list_models(state: AppState) -> ModelList:
    runtime = state.require_runtime()
    name = runtime.pipeline.embedder.name
    with state.sessions.begin() as session:
        register_packaged(session, state.settings, name)
        active = desired_version(session, state.settings, name).id
        counts = models_repo.embedding_counts(session)
        rows = models_repo.list_models(session)
        models = [_public(row, active, runtime.model_version, counts) for row in rows]
    return ModelList(models=models)


def activate_model(state: AppState, model_id: str) -> ModelPublic:
    """Make `model_id` the active model; the service swaps to it within a poll interval.

    Faces enrolled since that version last served are embedded from their crops first, in
    the background, so old answers continue until the new index is complete.
    """
    runtime = state.require_runtime()
    name = runtime.pipeline.embedder.name
    with state.sessions.begin() as session:
        row = models_repo.get_model(session, model_id)
        if row.embedder != name:
            raise Conflict(
                f"Model {model_id} is a {row.embedder} model; the service runs {name}.",
                details={"model_id": model_id, "embedder": row.embedder, "configured": name},
            )
        models_repo.activate(session, model_id)
        counts = models_repo.embedding_counts(session)
        return _public(row, model_id, runtime.model_version, counts)


def delete_model(state: AppState, model_id: str) -> ModelPublic:
    """Delete a version nothing needs: vectors, calibration and row in one transaction, then
    its files.

    A crash after the commit leaves only unused files: the checkpoint folder is removed at
    the next start-up, and an index is keyed by a version never served.
    """
    # Under the write lock, as a model swap's last step is: a swap to this version that
    # was building meanwhile then sees it gone, and drops what it wrote for it.
    with state.write_lock, state.sessions.begin() as session:
        serving = state.require_runtime().model_version
        row = models_repo.get_model(session, model_id)
        model_removal.refuse_deletion(session, row, serving)
        counts = models_repo.embedding_counts(session)
        deleted = _public(row, "", serving, counts)
        # The checks above read the database before it changed, perhaps: another request
        # or process may have activated, derived from or deleted the version since.
        if not models_repo.delete_unneeded(session, model_id):
            model_removal.refuse_changed(session, model_id, serving)
        calibrations_repo.remove(session, model_id)
    model_removal.remove_files(state.settings, model_id, deleted.weights_path)
    return deleted

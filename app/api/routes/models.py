"""Model versions (admin API key): list, activate one (promotion or rollback), delete one."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminKey, StateDep
from app.schemas.common import ERROR_RESPONSES
from app.schemas.finetune import ModelList, ModelPublic
from app.services import models_admin

router = APIRouter(
    prefix="/v1/admin", tags=["fine-tuning"], dependencies=[AdminKey], responses=ERROR_RESPONSES
)


@router.get("/models")
def list_models(state: StateDep) -> ModelList:
    """Every model version with its metrics; `active` is chosen, `serving` answers now."""
    return models_admin.list_models(state)


@router.post("/models/{model_id}/activate", status_code=status.HTTP_202_ACCEPTED)
def activate_model(model_id: str, state: StateDep) -> ModelPublic:
    """Serve this version (e.g. roll back); the swap follows once its index is ready."""
    return models_admin.activate_model(state, model_id)


@router.delete("/models/{model_id}")
def delete_model(model_id: str, state: StateDep) -> ModelPublic:
    """Delete a version and its vectors, checkpoint, index files and calibration (409 while
    anything needs it); answers the record as it was."""
    return models_admin.delete_model(state, model_id)

"""Admin-only operations (admin API key)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, StateDep
from app.schemas.admin import IndexRebuilt
from app.schemas.calibration import CalibrateParams, CalibrationPublic, CalibrationResult
from app.schemas.common import ERROR_RESPONSES
from app.services.gallery_calibration import (
    calibrate_on_gallery,
    delete_calibration,
    stored_calibration,
)
from app.services.maintenance import rebuild_active_index

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[AdminKey], responses=ERROR_RESPONSES
)


@router.post("/index/rebuild")
async def rebuild_index(state: StateDep) -> IndexRebuilt:
    """Rebuild the active model's FAISS index from the database, the source of truth."""
    return await run_in_threadpool(rebuild_active_index, state)


@router.post("/calibrate")
async def calibrate(state: StateDep, params: CalibrateParams | None = None) -> CalibrationResult:
    """Calibrate the active model's thresholds on the enrolled faces and serve them at once.

    Impostor scores come from faces of different subjects, from the database; 422
    insufficient_calibration_data when fewer than 2 subjects have faces, and 422
    calibration_unreliable, storing nothing, when too few impostor scores can measure a
    target FAR, or calibration_degenerate when a threshold would accept nobody or over
    twice its FAR (the same person under two subjects), unless the body says "force": true.
    """
    return await run_in_threadpool(calibrate_on_gallery, state, params or CalibrateParams())


@router.get("/calibration")
def get_calibration(state: StateDep) -> CalibrationPublic:
    """The active model's stored calibration; 404 calibration_not_found when there is none,
    503 model_unavailable while this process cannot load the active model."""
    return stored_calibration(state)


@router.delete("/calibration")
def remove_calibration(state: StateDep) -> CalibrationPublic:
    """Forget the active model's stored calibration: its embedder's default thresholds serve
    from the next request. Returns what was removed; 404 calibration_not_found when none."""
    return delete_calibration(state)

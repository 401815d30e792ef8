"""Admin-only operations (admin API key)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, StateDep
from app.schemas.admin import IndexRebuilt
from app.schemas.common import ERROR_RESPONSES
from app.services.maintenance import rebuild_active_index

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[AdminKey], responses=ERROR_RESPONSES
)


@router.post("/index/rebuild")
async def rebuild_index(state: StateDep) -> IndexRebuilt:
    """Rebuild the active model's FAISS index from the database, the source of truth."""
    return await run_in_threadpool(rebuild_active_index, state)

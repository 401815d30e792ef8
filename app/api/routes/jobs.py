"""Fine-tuning jobs (admin API key): start one, follow its progress, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, StateDep
from app.schemas.common import ERROR_RESPONSES
from app.schemas.finetune import FinetuneRequest, JobAccepted, JobList, JobPublic
from app.services import finetune

router = APIRouter(
    prefix="/v1/admin", tags=["fine-tuning"], dependencies=[AdminKey], responses=ERROR_RESPONSES
)


@router.post("/finetune", status_code=status.HTTP_202_ACCEPTED)
async def start_finetune(state: StateDep, params: FinetuneRequest | None = None) -> JobAccepted:
    """Fine-tune the serving embedder on the gallery's stored crops, in a separate process.

    409 job_running while another job is queued or running.
    """
    return await run_in_threadpool(finetune.start_finetune, state, params or FinetuneRequest())


@router.get("/jobs")
def list_jobs(state: StateDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    """The most recent jobs first."""
    return finetune.list_jobs(state, limit)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, state: StateDep) -> JobPublic:
    """State, progress (epoch, step, loss, ETA), metrics and the promotion decision."""
    return finetune.get_job(state, job_id)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_202_ACCEPTED)
def cancel_job(job_id: str, state: StateDep) -> JobPublic:
    """Ask a queued or running job to stop; it ends `cancelled` and promotes nothing."""
    return finetune.cancel_job(state, job_id)

"""Fine-tuning jobs from the web process: start one (in its own process), list, cancel."""

from __future__ import annotations

import torch

from app.errors import InvalidRequest, JobFinished, problem
from app.gallery import jobs_repo
from app.gallery.orm import Job
from app.schemas.finetune import FinetuneParams, JobAccepted, JobList, JobPublic
from app.state import AppState
from app.training.admission import queue_job
from app.training.owners import this_process
from app.training.supervisor import end_abandoned

_ENDED_EARLY = (jobs_repo.FAILED, jobs_repo.CANCELLED, jobs_repo.INTERRUPTED)


def job_public(job: Job) -> JobPublic:
    progress = dict(job.progress or {})
    if job.state in _ENDED_EARLY:
        # The worker's last word was written while it ran; it says nothing of the end.
        progress.update(phase=job.state, eta_s=None)
    return JobPublic.model_validate(
        {
            "id": job.id,
            "state": job.state,
            "params": job.params,
            "progress": progress,
            "result": job.result,
            "error": job.error,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }
    )


def start_finetune(state: AppState, params: FinetuneParams) -> JobAccepted:
    """Queue a job and spawn its training process; one job at a time (409 otherwise).

    What the job would be refused for that the database can tell now is refused here, with
    the same error, rather than after the 202 as a failed job: a process that cannot load
    the active model (the job's base) too."""
    state.serving_runtime()
    check_device(params.device)
    with state.jobs.lock:
        state.jobs.reap(state.sessions)
        # A job whose process is gone (a command line killed with kill -9) holds no slot.
        end_abandoned(state.sessions, state.settings.models_dir)
        job_id = queue_job(state.settings, state.sessions, params, this_process())
        try:
            state.jobs.spawn(state.settings, job_id)
        except Exception as error:
            with state.sessions.begin() as session:
                jobs_repo.finish_job(session, job_id, jobs_repo.FAILED, error=str(error))
            raise
    return JobAccepted(
        job_id=job_id, state="queued", effective_batch_size=params.effective_batch_size
    )


def list_jobs(state: AppState, limit: int) -> JobList:
    with state.sessions() as session:
        return JobList(jobs=[job_public(job) for job in jobs_repo.list_jobs(session, limit)])


def get_job(state: AppState, job_id: str) -> JobPublic:
    with state.sessions() as session:
        return job_public(jobs_repo.get_job(session, job_id))


def cancel_job(state: AppState, job_id: str) -> JobPublic:
    """Ask the job to stop; it ends `cancelled` within a micro-batch, promoting nothing.
    A job whose process is gone, which nothing would stop, ends `cancelled` at once."""
    with state.sessions.begin() as session:
        job = jobs_repo.request_cancel(session, job_id)
        if job.state not in jobs_repo.ACTIVE_STATES:
            raise JobFinished(
                f"Job {job_id} already ended ({job.state}).",
                details={"job_id": job_id, "state": job.state},
            )
    if end_abandoned(state.sessions, state.settings.models_dir, job_id):
        with state.sessions() as session:
            job = jobs_repo.get_job(session, job_id)
    return job_public(job)


def check_device(device: str) -> None:
    """Refuse a CUDA device this machine lacks now, not after the job has loaded."""
    if not device.startswith("cuda"):
        return
    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise InvalidRequest(
            f"device {device} is not available here; "
            f"{torch.cuda.device_count()} CUDA device(s) found",
            [problem(["body", "device"], f"{device} is not available here", "device_unavailable")],
        )

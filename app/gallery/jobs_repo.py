"""Fine-tuning job queries; like repository.py, functions flush and callers commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, true, update
from sqlalchemy.orm import Session

from app.errors import JobNotFound
from app.gallery.orm import Job, utcnow

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
# States in which a job still holds the (single) training slot.
ACTIVE_STATES = (QUEUED, RUNNING, CANCELLING)


def create_job(s: Session, params: dict[str, Any]) -> Job:
    job = Job(state=QUEUED, params=dict(params), progress={})
    s.add(job)
    s.flush()
    return job


def get_job(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} not found", {"job_id": job_id})
    return job


def list_jobs(s: Session, limit: int = 50) -> list[Job]:
    """The most recent jobs first."""
    return list(s.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)))


def active_job(s: Session) -> Job | None:
    query = select(Job).where(Job.state.in_(ACTIVE_STATES)).order_by(Job.created_at)
    return s.scalars(query.limit(1)).first()


def state_of(s: Session, job_id: str) -> str:
    state = s.scalar(select(Job.state).where(Job.id == job_id))
    if state is None:
        raise JobNotFound(f"job {job_id} not found", {"job_id": job_id})
    return state


def start_job(s: Session, job_id: str) -> bool:
    """queued -> running; False when the job was cancelled (or interrupted) before it began."""
    changed = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == QUEUED)
        .values(state=RUNNING, started_at=utcnow())
    )
    return bool(getattr(changed, "rowcount", 0))


def set_progress(s: Session, job_id: str, progress: dict[str, Any]) -> None:
    s.execute(update(Job).where(Job.id == job_id).values(progress=progress))


def request_cancel(s: Session, job_id: str) -> Job:
    """Ask the worker to stop; it notices between micro-batches and ends `cancelled`.

    A conditional write: a cancel that waited on a success being committed finds the job
    ended and changes nothing, where a read-then-write turned `succeeded` back into
    `cancelling` (and the job then ended `failed`, its model serving)."""
    s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_((QUEUED, RUNNING)))
        .values(state=CANCELLING)
        .execution_options(synchronize_session=False)
    )
    job = s.scalars(
        select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    ).first()
    if job is None:
        raise JobNotFound(f"job {job_id} not found", {"job_id": job_id})
    return job


def finish_job(
    s: Session,
    job_id: str,
    state: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    from_states: tuple[str, ...] = ACTIVE_STATES,
) -> bool:
    """Record the outcome unless the job already ended (e.g. marked interrupted meanwhile),
    or is in none of `from_states`."""
    changed = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(from_states))
        .values(state=state, result=result, error=error, finished_at=utcnow())
    )
    return bool(getattr(changed, "rowcount", 0))


def interrupt_unfinished(
    s: Session, job_id: str | None = None, error: str = "the service stopped mid-job"
) -> int:
    """Jobs no process runs any more end: cancelled if that was asked, else interrupted.

    Only `job_id` when given, else every unfinished job (at start-up, after a restart).
    """
    mine = Job.id == job_id if job_id is not None else true()
    now = utcnow()
    s.execute(
        update(Job).where(mine, Job.state == CANCELLING).values(state=CANCELLED, finished_at=now)
    )
    changed = s.execute(
        update(Job)
        .where(mine, Job.state.in_((QUEUED, RUNNING)))
        .values(state=INTERRUPTED, finished_at=now, error=error)
    )
    return int(getattr(changed, "rowcount", 0))

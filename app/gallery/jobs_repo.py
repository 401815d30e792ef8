"""Fine-tuning job queries; like repository.py, functions flush and callers commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import exists, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import JobNotFound, JobRunning
from app.gallery.orm import Job, ModelVersion, utcnow

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
# States in which a job still holds the (single) training slot. Migration 0005's unique
# index lists them too: changing them needs a migration.
ACTIVE_STATES = (QUEUED, RUNNING, CANCELLING)


class Owner(NamedTuple):
    """The process answerable for a job: its creator while queued, then the one running it."""

    host: str
    pid: int


def database_now(s: Session) -> datetime:
    """The database server's clock on PostgreSQL, so that heartbeats written on one host
    and judged on another are read against one clock; SQLite has only this host's."""
    if s.get_bind().dialect.name == "postgresql":
        now: datetime | None = s.scalar(select(func.now()))
        if now is not None:
            return now.astimezone(UTC)
    return utcnow()


def create_job(s: Session, params: dict[str, Any], owner: Owner | None = None) -> Job:
    """A queued job; JobRunning if another holds the slot, however recently it was queued.

    Raised with no details when the database refuses the row (migration 0005's index): a
    process sharing the database queued one between `refuse_if_running` and this insert.
    The transaction is then unusable; the caller's rollback ends it."""
    job = Job(state=QUEUED, params=dict(params), progress={})
    if owner is not None:
        job.owner_host, job.owner_pid = owner
        job.heartbeat_at = database_now(s)
    s.add(job)
    try:
        s.flush()
    except IntegrityError as error:  # the id is a fresh uuid4: the index is what refused
        raise JobRunning(
            "Another fine-tuning job was queued at the same moment; one runs at a time."
        ) from error
    return job


def refuse_if_running(s: Session) -> None:
    """JobRunning, naming the job, while one is queued, running or cancelling."""
    running = active_job(s)
    if running is not None:
        raise JobRunning(
            f"Job {running.id} is {running.state}; one fine-tuning job runs at a time.",
            details={"job_id": running.id, "state": running.state},
        )


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


def unfinished_jobs(s: Session, job_id: str | None = None) -> list[Job]:
    """Queued, running and cancelling jobs (or only `job_id`, if it is one), oldest first."""
    query = select(Job).where(Job.state.in_(ACTIVE_STATES)).order_by(Job.created_at)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    return list(s.scalars(query))


def start_job(s: Session, job_id: str, owner: Owner | None = None) -> bool:
    """queued -> running, owned by `owner`; False when the job was cancelled (or
    interrupted) before it began."""
    values: dict[str, Any] = {"state": RUNNING, "started_at": utcnow()}
    if owner is not None:
        values |= {"owner_host": owner.host, "owner_pid": owner.pid}
        values["heartbeat_at"] = database_now(s)
    changed = s.execute(update(Job).where(Job.id == job_id, Job.state == QUEUED).values(**values))
    return bool(getattr(changed, "rowcount", 0))


def beat(s: Session, job_id: str) -> None:
    """The owner says it still runs the job (a no-op once the job has ended)."""
    s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_((RUNNING, CANCELLING)))
        .values(heartbeat_at=database_now(s))
    )


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
    s: Session, job_id: str, error: str = "the service stopped mid-job"
) -> int:
    """A job its process stopped running ends: cancelled if that was asked, else interrupted."""
    mine = Job.id == job_id
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


def end_abandoned(s: Session, job: Job, error: str) -> bool:
    """End `job`, found abandoned: cancelled if that was asked, else interrupted.

    Only if it is as it was read: a heartbeat, a start or a cancel since then means its
    process (or another) has moved it on, and it is judged again next time."""
    beat = job.heartbeat_at
    beat_then = Job.heartbeat_at.is_(None) if beat is None else Job.heartbeat_at == beat
    changed = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == job.state, beat_then)
        .values(
            state=CANCELLED if job.state == CANCELLING else INTERRUPTED,
            error=error,
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(changed, "rowcount", 0))


def ended_without_model(s: Session, job_ids: list[str], folder: str) -> list[str]:
    """Of `job_ids`, the jobs that have ended and that no model row refers to: not by its
    job id, nor by a weights path in `folder`/<job id>/. One statement, so one snapshot:
    a promotion commits its job's end and its model row together."""
    in_folder = literal(f"{folder}/") + Job.id + literal("/%")
    referenced = exists().where(
        or_(ModelVersion.job_id == Job.id, ModelVersion.weights_path.like(in_folder))
    )
    query = select(Job.id).where(Job.id.in_(job_ids), Job.state.not_in(ACTIVE_STATES), ~referenced)
    return list(s.scalars(query))

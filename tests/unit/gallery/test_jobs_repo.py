"""The job state machine as stored in the jobs table."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.errors import JobNotFound
from app.gallery import jobs_repo


def test_a_job_runs_and_finishes_once(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        job_id = jobs_repo.create_job(s, {"epochs": 1}).id
        assert jobs_repo.active_job(s) is not None and jobs_repo.state_of(s, job_id) == "queued"
    with session_factory.begin() as s:
        assert jobs_repo.start_job(s, job_id) and not jobs_repo.start_job(s, job_id)
        jobs_repo.set_progress(s, job_id, {"step": 3})
        assert jobs_repo.finish_job(s, job_id, jobs_repo.SUCCEEDED, result={"ok": True})
        # An ended job stays ended, whatever arrives late.
        assert not jobs_repo.finish_job(s, job_id, jobs_repo.FAILED, error="late")
    with session_factory() as s:
        job = jobs_repo.get_job(s, job_id)
        assert (job.state, job.progress, job.result, job.error) == (
            "succeeded",
            {"step": 3},
            {"ok": True},
            None,
        )
        assert job.started_at and job.finished_at and job.finished_at >= job.started_at
        assert jobs_repo.active_job(s) is None


def test_cancelling_a_queued_job_keeps_it_from_starting(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as s:
        job_id = jobs_repo.create_job(s, {}).id
        assert jobs_repo.request_cancel(s, job_id).state == "cancelling"
        assert not jobs_repo.start_job(s, job_id)
        assert jobs_repo.active_job(s) is not None  # still holds the slot until it ends


def test_restart_interrupts_unfinished_jobs(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        queued = jobs_repo.create_job(s, {}).id
        running = jobs_repo.create_job(s, {}).id
        jobs_repo.start_job(s, running)
        cancelling = jobs_repo.create_job(s, {}).id
        jobs_repo.request_cancel(s, cancelling)
        done = jobs_repo.create_job(s, {}).id
        jobs_repo.finish_job(s, done, jobs_repo.FAILED, error="boom")
    with session_factory.begin() as s:
        assert jobs_repo.interrupt_unfinished(s) == 2
    with session_factory() as s:
        states = {j.id: j.state for j in jobs_repo.list_jobs(s)}
    assert states == {
        queued: "interrupted",
        running: "interrupted",
        cancelling: "cancelled",
        done: "failed",
    }


def test_unknown_jobs_raise(session: Session) -> None:
    with pytest.raises(JobNotFound):
        jobs_repo.get_job(session, "nope")
    with pytest.raises(JobNotFound):
        jobs_repo.state_of(session, "nope")

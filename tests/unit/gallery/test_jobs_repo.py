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


@pytest.mark.parametrize(
    ("state", "stopped", "ended"),
    [("queued", 1, "interrupted"), ("running", 1, "interrupted"), ("cancelling", 0, "cancelled")],
)
def test_a_stopped_job_ends_interrupted_or_cancelled(
    session_factory: sessionmaker[Session], state: str, stopped: int, ended: str
) -> None:
    with session_factory.begin() as s:
        done = jobs_repo.create_job(s, {}).id
        jobs_repo.finish_job(s, done, jobs_repo.FAILED, error="boom")
        job_id = jobs_repo.create_job(s, {}).id
        if state != "queued":
            jobs_repo.start_job(s, job_id)
        if state == "cancelling":
            jobs_repo.request_cancel(s, job_id)
    with session_factory.begin() as s:
        assert jobs_repo.interrupt_unfinished(s, done, error="late") == 0
        assert jobs_repo.state_of(s, job_id) == state  # only the job named: never every one
        assert jobs_repo.interrupt_unfinished(s, job_id) == stopped  # cancelled: not counted
    with session_factory() as s:
        states = {j.id: j.state for j in jobs_repo.list_jobs(s)}
    assert states == {done: "failed", job_id: ended}


def test_the_owner_and_its_heartbeat_are_recorded(session_factory: sessionmaker[Session]) -> None:
    creator, runner = jobs_repo.Owner("host-a", 11), jobs_repo.Owner("host-b", 22)
    with session_factory.begin() as s:
        job = jobs_repo.create_job(s, {}, creator)
        created = (job.owner_host, job.owner_pid, job.heartbeat_at)
        assert created[:2] == ("host-a", 11) and created[2] is not None
        assert jobs_repo.start_job(s, job.id, runner)
    with session_factory() as s:
        started = jobs_repo.get_job(s, job.id)
        assert (started.owner_host, started.owner_pid) == ("host-b", 22)
        assert started.heartbeat_at is not None and started.heartbeat_at >= created[2]
    with session_factory.begin() as s:
        jobs_repo.beat(s, job.id)
    with session_factory() as s:
        beaten = jobs_repo.get_job(s, job.id).heartbeat_at
        assert beaten is not None and beaten >= started.heartbeat_at
    with session_factory.begin() as s:
        jobs_repo.finish_job(s, job.id, jobs_repo.SUCCEEDED)
        jobs_repo.beat(s, job.id)  # a late beat of an ended job changes nothing
    with session_factory() as s:
        assert jobs_repo.get_job(s, job.id).heartbeat_at == beaten


def test_an_abandoned_job_ends_only_as_it_was_read(
    session_factory: sessionmaker[Session],
) -> None:
    owner = jobs_repo.Owner("host-a", 11)
    with session_factory.begin() as s:
        running = jobs_repo.create_job(s, {}, owner).id
        jobs_repo.start_job(s, running, owner)
    with session_factory() as s:
        (seen,) = jobs_repo.unfinished_jobs(s)
    with session_factory.begin() as s:
        jobs_repo.beat(s, running)  # its process spoke after it was read
    with session_factory.begin() as s:
        assert not jobs_repo.end_abandoned(s, seen, "gone")
        assert jobs_repo.state_of(s, running) == "running"
        jobs_repo.finish_job(s, running, jobs_repo.SUCCEEDED)  # one active job at a time

    with session_factory.begin() as s:
        cancelling = jobs_repo.create_job(s, {}, owner).id
        jobs_repo.start_job(s, cancelling, owner)
        jobs_repo.request_cancel(s, cancelling)
    with session_factory() as s:
        (seen,) = jobs_repo.unfinished_jobs(s)
    with session_factory.begin() as s:
        assert jobs_repo.end_abandoned(s, seen, "gone")
    with session_factory() as s:
        ended = jobs_repo.get_job(s, cancelling)
        assert (ended.state, ended.error) == ("cancelled", "gone") and ended.finished_at
        assert [job.id for job in jobs_repo.unfinished_jobs(s, cancelling)] == []


def test_unknown_jobs_raise(session: Session) -> None:
    with pytest.raises(JobNotFound):
        jobs_repo.get_job(session, "nope")
    with pytest.raises(JobNotFound):
        jobs_repo.state_of(session, "nope")

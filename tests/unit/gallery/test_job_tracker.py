"""JobTracker.succeed: success is claimed by a write, so a cancel cannot slip in first."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, cast

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo
from app.schemas.finetune import JobResult
from app.training.owners import this_host
from app.training.tracker import JobCancelled, JobTracker


class _Result:
    def model_dump(self) -> dict[str, Any]:
        return {"model_id": "m@new"}


RESULT = cast(JobResult, _Result())


def _running_job(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as s:
        job_id = jobs_repo.create_job(s, {}).id
        assert jobs_repo.start_job(s, job_id)
    return job_id


def _state(sessions: sessionmaker[Session], job_id: str) -> str:
    with sessions() as s:
        return jobs_repo.state_of(s, job_id)


def test_success_records_the_result_and_runs_within_in_one_transaction(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = _running_job(session_factory)
    seen: list[str] = []
    JobTracker(session_factory, job_id).succeed(
        RESULT, within=lambda s: seen.append(jobs_repo.state_of(s, job_id))
    )
    assert seen == ["succeeded"]  # within runs after the claim, inside its transaction
    with session_factory() as s:
        job = jobs_repo.get_job(s, job_id)
        assert (job.state, job.result) == ("succeeded", {"model_id": "m@new"})


def test_a_cancel_requested_first_wins_and_within_never_runs(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = _running_job(session_factory)
    with session_factory.begin() as s:
        jobs_repo.request_cancel(s, job_id)
    ran: list[bool] = []
    with pytest.raises(JobCancelled):
        JobTracker(session_factory, job_id).succeed(RESULT, within=lambda s: ran.append(True))
    assert ran == [] and _state(session_factory, job_id) == "cancelling"


def test_a_failing_within_rolls_the_claim_back(session_factory: sessionmaker[Session]) -> None:
    job_id = _running_job(session_factory)

    def activate(_: Session) -> None:
        raise RuntimeError("activation failed")

    with pytest.raises(RuntimeError, match="activation failed"):
        JobTracker(session_factory, job_id).succeed(RESULT, within=activate)
    assert _state(session_factory, job_id) == "running"  # free to end failed or cancelled


def test_a_cancel_arriving_during_the_success_finds_the_job_ended(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = _running_job(session_factory)
    inside = threading.Event()

    def activate(_: Session) -> None:
        inside.set()
        time.sleep(0.5)  # the cancel arrives now, while the claim is uncommitted

    worker = threading.Thread(
        target=JobTracker(session_factory, job_id).succeed,
        args=(RESULT,),
        kwargs={"within": activate},
    )
    worker.start()
    assert inside.wait(10)
    with session_factory.begin() as s:  # waits for the success to commit
        answered = jobs_repo.request_cancel(s, job_id).state
    worker.join(10)
    # It used to turn `succeeded` back into `cancelling`, answered 202, and the job then
    # ended `failed` with its model serving.
    assert answered == "succeeded" and _state(session_factory, job_id) == "succeeded"


def test_a_begun_job_beats_while_busy_and_stops_beating_when_closed(
    session_factory: sessionmaker[Session],
) -> None:
    """Evaluating and re-embedding write no progress for minutes: a heartbeat thread keeps
    saying the job's process is alive, or another process would end the job."""
    with session_factory.begin() as s:
        job_id = jobs_repo.create_job(s, {}).id
    tracker = JobTracker(session_factory, job_id, heartbeat_s=0.05)
    assert tracker.begin()

    def heartbeat() -> Any:
        with session_factory() as s:
            return jobs_repo.get_job(s, job_id).heartbeat_at

    try:
        with session_factory() as s:
            job = jobs_repo.get_job(s, job_id)
            assert (job.owner_host, job.owner_pid) == (this_host(), os.getpid())
        first = heartbeat()
        deadline = time.monotonic() + 10
        while heartbeat() == first:  # the main thread is busy elsewhere, writing nothing
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
    finally:
        tracker.close()
    last = heartbeat()
    time.sleep(0.3)
    assert heartbeat() == last

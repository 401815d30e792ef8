"""JobWatchdog: a job without progress for its stall timeout ends failed; progress keeps it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo
from app.training import watchdog
from app.training.tracker import JobTracker

# Long enough that a loaded CI machine's pauses (a slow fsync, a busy core) between two
# progress reports stay well inside it: at 0.5 s, one such pause ended a job that was working.
STALL_S = 1.5


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, float]]]:
    """The exit statuses the watchdog ends this process with, and when; it goes on instead."""
    ended: list[tuple[int, float]] = []
    monkeypatch.setattr(os, "_exit", lambda code: ended.append((code, time.monotonic())))
    yield ended


def _begun(sessions: sessionmaker[Session], **options: float) -> JobTracker:
    with sessions.begin() as s:
        job_id = jobs_repo.create_job(s, {}).id
    tracker = JobTracker(sessions, job_id, heartbeat_s=0.05, **options)
    assert tracker.begin()
    return tracker


def _job(sessions: sessionmaker[Session], tracker: JobTracker) -> tuple[str, str | None]:
    with sessions() as s:
        job = jobs_repo.get_job(s, tracker.job_id)
        return job.state, job.error


def test_progress_keeps_a_long_job_alive_and_the_stall_counts_from_the_last_tick(
    session_factory: sessionmaker[Session], exits: list[tuple[int, float]]
) -> None:
    tracker = _begun(session_factory, stall_timeout_s=STALL_S)
    try:
        # Two stall timeouts of work, reported as training steps and embedding batches.
        for step in range(20):
            time.sleep(STALL_S / 10)
            # Before the report: the tracker notes its progress first, then writes it to the
            # database, which a loaded machine can take 0.1 s or more to do.
            last_tick = time.monotonic()
            if step % 2:
                tracker.update(step=step)
            else:
                tracker.check()
        assert _job(session_factory, tracker) == ("running", None) and exits == []

        deadline = time.monotonic() + 10
        while _job(session_factory, tracker)[0] == "running":  # now it hangs
            assert time.monotonic() < deadline, "the stalled job was never ended"
            time.sleep(0.05)
    finally:
        tracker.close()
    state, error = _job(session_factory, tracker)
    assert state == "failed" and error is not None
    assert error.startswith("stalled: no training step, evaluation or embedding batch finished")
    assert error.endswith("(FACE_FINETUNE_STALL_TIMEOUT_S=1.5); its process was ended")
    ((code, at),) = exits
    assert code == watchdog.STUCK_EXIT_CODE and at - last_tick >= STALL_S


def test_a_timeout_of_0_never_ends_a_job(
    session_factory: sessionmaker[Session], exits: list[tuple[int, float]]
) -> None:
    tracker = _begun(session_factory, stall_timeout_s=0.0)
    try:
        time.sleep(2 * STALL_S)
        assert _job(session_factory, tracker) == ("running", None) and exits == []
        tracker.end(jobs_repo.SUCCEEDED)
    finally:
        tracker.close()


def test_a_cancelled_job_cleaning_up_is_not_stalled(
    session_factory: sessionmaker[Session], exits: list[tuple[int, float]]
) -> None:
    """Deleting a cut-short promotion's vectors reports no progress, and may take minutes."""
    tracker = _begun(session_factory, stall_timeout_s=STALL_S)
    try:
        with session_factory.begin() as s:
            jobs_repo.request_cancel(s, tracker.job_id)
        assert tracker.should_stop()
        time.sleep(2 * STALL_S)
        assert _job(session_factory, tracker) == ("cancelling", None) and exits == []
        tracker.end(jobs_repo.CANCELLED)
    finally:
        tracker.close()
    assert _job(session_factory, tracker) == ("cancelled", None)

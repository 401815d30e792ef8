"""How a fine-tuning job is shown once it has ended."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.gallery import jobs_repo
from app.gallery.orm import Job
from app.services.finetune import job_public

RUNNING = {"phase": "training", "step": 3, "total_steps": 10, "eta_s": 77.1, "elapsed_s": 12.0}


def job(state: str, progress: dict[str, object]) -> Job:
    now = datetime.now(UTC)
    return Job(
        id="j1",
        state=state,
        params={},
        progress=progress,
        created_at=now,
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize("state", [jobs_repo.INTERRUPTED, jobs_repo.CANCELLED, jobs_repo.FAILED])
def test_a_job_that_ended_early_shows_where_it_stopped_not_a_live_eta(state: str) -> None:
    progress = job_public(job(state, dict(RUNNING))).progress
    assert (progress.phase, progress.eta_s) == (state, None)
    assert (progress.step, progress.total_steps, progress.elapsed_s) == (3, 10, 12.0)


def test_a_running_job_keeps_its_live_progress() -> None:
    progress = job_public(job(jobs_repo.RUNNING, dict(RUNNING))).progress
    assert (progress.phase, progress.eta_s) == ("training", 77.1)

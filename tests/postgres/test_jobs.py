"""Several service processes on one database: none ends a job another process still runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.gallery.db import make_engine, make_session_factory, migrate
from tests.api.conftest import assert_error, open_client
from tests.api.finetune.conftest import QUICK_JOB
from tests.api.finetune.test_abandoned import job_of, kill_9, start_stand_in

# Collected again here, where the `db_url` fixture names a PostgreSQL database.
from tests.unit.gallery.test_one_active_job import (  # noqa: F401
    test_a_job_queued_behind_the_checks_back_is_refused,
    test_migration_0005_ends_all_active_jobs_but_the_last_to_beat,
    test_no_second_active_row_whatever_writes_it,
)
from tests.unit.training.test_admission import race_two_queues


def test_starting_services_leave_a_running_job_to_its_process(
    db_url: str, tmp_path: Path, models: Any
) -> None:
    stand_in: list[subprocess.Popen[str]] = []
    first = open_client(tmp_path / "first", models, database_url=db_url)
    try:
        process, job_id = start_stand_in(stand_in, db_url)
        # A second service process starts on the same database: it used to mark the job
        # interrupted, and the job then stopped at its next check.
        second = open_client(tmp_path / "second", models, database_url=db_url)
        try:
            time.sleep(1.0)
            assert process.poll() is None
            for client in (first, second):
                assert job_of(client, job_id)["state"] == "running"
                assert_error(client.post("/v1/admin/finetune", json=QUICK_JOB), 409, "job_running")
            kill_9(process)
            # The slot is free: the next refusal is the empty gallery's, not the dead job's.
            assert_error(
                second.post("/v1/admin/finetune", json=QUICK_JOB), 422, "insufficient_training_data"
            )
            job = job_of(first, job_id)
            assert job["state"] == "interrupted" and "is gone" in str(job["error"])
        finally:
            second.__exit__(None, None, None)
    finally:
        first.__exit__(None, None, None)
        for started in stand_in:
            started.kill()
            started.wait()


def test_two_processes_queueing_at_once_get_one_job_and_one_conflict(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both pass the check for a running job; the partial unique index refuses the second."""
    settings = Settings(data_dir=tmp_path, database_url=db_url, embedder="arcface-mbf")
    engine = make_engine(db_url)
    try:
        migrate(engine)
        race_two_queues(settings, make_session_factory(engine), monkeypatch)
    finally:
        engine.dispose()

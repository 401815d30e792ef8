"""Abandoned jobs: a job whose process is gone ends, and a live one is left to its process."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import jobs_repo, models_repo
from app.gallery.db import alembic_config, make_engine, make_session_factory, migrate
from app.gallery.orm import Job
from app.training import supervisor
from app.training.owners import STALE_AFTER_S, pid_alive, this_host, this_process
from app.training.supervisor import JobSupervisor, end_abandoned, remove_leftovers
from tests.unit.gallery.revisions import head_revision


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running_job(sessions: sessionmaker[Session], owner: jobs_repo.Owner) -> str:
    with sessions.begin() as s:
        job_id = jobs_repo.create_job(s, {}, owner).id
        assert jobs_repo.start_job(s, job_id, owner)
    return job_id


def age_heartbeat(sessions: sessionmaker[Session], job_id: str, seconds: float) -> None:
    with sessions.begin() as s:
        then = jobs_repo.database_now(s) - timedelta(seconds=seconds)
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=then))


def finish(sessions: sessionmaker[Session], job_id: str) -> None:
    with sessions.begin() as s:
        assert jobs_repo.finish_job(s, job_id, jobs_repo.SUCCEEDED)


def job(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as s:
        return jobs_repo.get_job(s, job_id)


def test_pids_of_this_host() -> None:
    assert pid_alive(os.getpid()) and not pid_alive(dead_pid())
    assert not pid_alive(0)  # os.kill(0, 0) would signal this process group


def test_a_job_whose_process_is_gone_ends_interrupted(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    alive = running_job(session_factory, this_process())
    assert end_abandoned(session_factory, tmp_path) == []
    assert job(session_factory, alive).state == "running"
    finish(session_factory, alive)  # one active job at a time
    gone = running_job(session_factory, jobs_repo.Owner(this_host(), dead_pid()))
    assert end_abandoned(session_factory, tmp_path) == [gone]
    ended = job(session_factory, gone)
    assert ended.state == "interrupted" and ended.finished_at is not None
    assert ended.error is not None and ended.error.startswith("the process that ran it is gone")


def test_a_stale_heartbeat_counts_whatever_the_host(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # A pid on another host cannot be looked at: only its heartbeat says it runs.
    elsewhere = running_job(session_factory, jobs_repo.Owner("another-host", 1))
    assert end_abandoned(session_factory, tmp_path) == []
    age_heartbeat(session_factory, elsewhere, STALE_AFTER_S - 10)
    assert end_abandoned(session_factory, tmp_path) == []
    age_heartbeat(session_factory, elsewhere, STALE_AFTER_S + 10)
    assert end_abandoned(session_factory, tmp_path) == [elsewhere]
    error = job(session_factory, elsewhere).error
    assert error is not None and "no heartbeat from pid 1 on another-host" in error
    # A live pid of this host that stopped beating: a reused pid, or a hung process.
    hung = running_job(session_factory, this_process())
    assert end_abandoned(session_factory, tmp_path) == []
    age_heartbeat(session_factory, hung, STALE_AFTER_S + 10)
    assert end_abandoned(session_factory, tmp_path) == [hung]


# (owner, state) of one unfinished job -> its state after a check before a new job, then
# after a start-up. Jobs without an owner were written before owners were: nothing says
# who runs them, so start-up ends them as it ended every unfinished job before.
START_UP_CASES = [
    ("none", "running", "running", ("interrupted", "the service stopped mid-job")),
    ("none", "cancelling", "cancelling", ("cancelled", None)),
    # Queued by a live process (another service process about to spawn it).
    ("alive", "queued", "queued", ("queued", None)),
    ("gone", "queued", "interrupted", ("interrupted", "the process that queued it is gone")),
    ("alive", "running", "running", ("running", None)),
]


@pytest.mark.parametrize(("owner", "state", "checked", "started"), START_UP_CASES)
def test_start_up_keeps_live_jobs_and_ends_unowned_ones(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    owner: str,
    state: str,
    checked: str,
    started: tuple[str, str | None],
) -> None:
    owners = {
        "none": None,
        "alive": this_process(),
        "gone": jobs_repo.Owner(this_host(), dead_pid()),
    }
    with session_factory.begin() as s:
        job_id = jobs_repo.create_job(s, {}, owners[owner]).id
        if state != "queued":
            jobs_repo.start_job(s, job_id, owners[owner])
        if state == "cancelling":
            jobs_repo.request_cancel(s, job_id)
    # Only a start-up ends jobs without an owner; the checks before a new job do not.
    end_abandoned(session_factory, tmp_path)
    assert job(session_factory, job_id).state == checked

    JobSupervisor().recover(session_factory, tmp_path)
    ended = job(session_factory, job_id)
    assert ended.state == started[0]
    assert (ended.error or "").startswith(started[1] or "")


def test_a_job_asked_to_cancel_ends_cancelled_once_its_process_is_gone(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    job_id = running_job(session_factory, jobs_repo.Owner(this_host(), dead_pid()))
    with session_factory.begin() as s:
        jobs_repo.request_cancel(s, job_id)
    assert end_abandoned(session_factory, tmp_path, job_id) == [job_id]
    assert job(session_factory, job_id).state == "cancelled"


def test_leftover_checkpoints_are_removed_and_registered_ones_kept(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory.begin() as s:
        killed = jobs_repo.create_job(s, {}).id  # killed mid-promotion: no model row
        jobs_repo.finish_job(s, killed, jobs_repo.FAILED, error="exit code -9")
        promoted = jobs_repo.create_job(s, {}).id
        jobs_repo.finish_job(s, promoted, jobs_repo.SUCCEEDED)
        models_repo.ensure_model(
            s,
            "arcface-mbf@aaaaaaaaaaaa",
            "arcface-mbf",
            "a" * 64,
            weights_path=Path("finetuned") / promoted / "weights.pt",
            job_id=promoted,
        )
        # A model row that names the folder only by its weights path.
        by_path = jobs_repo.create_job(s, {}).id
        jobs_repo.finish_job(s, by_path, jobs_repo.SUCCEEDED)
        models_repo.ensure_model(
            s,
            "arcface-mbf@bbbbbbbbbbbb",
            "arcface-mbf",
            "b" * 64,
            weights_path=Path("finetuned") / by_path / "weights.pt",
        )
        running = jobs_repo.create_job(s, {}).id
        jobs_repo.start_job(s, running)
    root = tmp_path / "finetuned"
    for name in (killed, promoted, by_path, running, "not-a-job"):
        (root / name).mkdir(parents=True)
        (root / name / "weights.pt").write_bytes(b"weights")
    (root / "stray-file").write_bytes(b"")

    assert remove_leftovers(session_factory, tmp_path) == [killed]
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([promoted, by_path, running, "not-a-job", "stray-file"])
    assert remove_leftovers(session_factory, tmp_path / "no-models-here") == []


def test_migration_0004_adds_owners_to_stored_jobs_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")  # a database from before job owners
            for job_id, state in (("f", "failed"), ("r", "running"), ("s", "succeeded")):
                connection.execute(
                    text(
                        "INSERT INTO jobs (id, state, params, progress, created_at) "
                        "VALUES (:id, :state, '{}', '{}', '2026-01-01 00:00:00')"
                    ),
                    {"id": job_id, "state": state},
                )
        migrate(engine)
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert {"owner_host", "owner_pid", "heartbeat_at"} <= columns
        sessions = make_session_factory(engine)
        with sessions() as s:
            stored = {j.id: (j.state, j.owner_host, j.owner_pid) for j in jobs_repo.list_jobs(s)}
        assert stored == {
            "f": ("failed", None, None),
            "r": ("running", None, None),
            "s": ("succeeded", None, None),
        }
        finish(sessions, "r")  # one active job at a time
        running_job(sessions, this_process())  # the new columns are written and read

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert not {"owner_host", "owner_pid", "heartbeat_at"} & columns
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM jobs")) == 4
        migrate(engine)  # and up again
        with engine.connect() as connection:
            version = connection.scalar(text("SELECT version_num FROM alembic_version"))
            assert version == head_revision()
    finally:
        engine.dispose()


def test_a_service_ends_abandoned_jobs_without_being_asked(
    session_factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its model watcher reaps every poll interval; every SWEEP_INTERVAL_S that also ends
    jobs whose process is gone, so that the job list stops saying `running` of them."""
    monkeypatch.setattr(supervisor, "SWEEP_INTERVAL_S", 0.0)
    jobs = JobSupervisor()
    jobs.recover(session_factory, tmp_path)
    alive = running_job(session_factory, this_process())
    jobs.reap(session_factory)
    assert job(session_factory, alive).state == "running"
    finish(session_factory, alive)  # one active job at a time
    gone = running_job(session_factory, jobs_repo.Owner(this_host(), dead_pid()))
    jobs.reap(session_factory)
    assert job(session_factory, gone).state == "interrupted"


def test_a_cancelled_job_whose_process_died_ends_cancelled_not_failed(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Its heartbeat ends a stuck, cancelled job's process: the cancel was what was asked."""
    jobs = JobSupervisor()
    jobs.recover(session_factory, tmp_path)
    job_id = running_job(session_factory, this_process())
    with session_factory.begin() as s:
        jobs_repo.request_cancel(s, job_id)
    process = multiprocessing.get_context("spawn").Process(target=os._exit, args=(70,))
    process.start()
    process.join()
    jobs._process, jobs._job_id = process, job_id
    jobs.reap(session_factory)
    ended = job(session_factory, job_id)
    assert (ended.state, ended.error) == ("cancelled", "the training process exited with code 70")
    # Without a cancel, a process that exits before recording an end failed the job.
    other = running_job(session_factory, this_process())
    process = multiprocessing.get_context("spawn").Process(target=os._exit, args=(1,))
    process.start()
    process.join()
    jobs._process, jobs._job_id = process, other
    jobs.reap(session_factory)
    assert job(session_factory, other).state == "failed"

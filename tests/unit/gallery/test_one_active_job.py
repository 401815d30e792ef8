"""Migration 0005: the database itself holds at most one queued, running or cancelling job."""

from __future__ import annotations

import importlib

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import JobRunning
from app.gallery import jobs_repo
from app.gallery.db import alembic_config, make_engine, migrate
from tests.unit.gallery.revisions import head_revision

revision = importlib.import_module("app.gallery.migrations.versions.0005_one_active_job")

CREATED = "2026-01-01 00:00:00"
INSERT_JOB = (
    "INSERT INTO jobs (id, state, params, progress, created_at, heartbeat_at) "
    "VALUES (:id, :state, '{}', '{}', :created, :beat)"
)


def test_the_index_lists_the_states_that_hold_the_slot() -> None:
    assert revision.ACTIVE_STATES == jobs_repo.ACTIVE_STATES


def test_a_job_queued_behind_the_checks_back_is_refused(
    session_factory: sessionmaker[Session],
) -> None:
    queued: list[str] = []
    with pytest.raises(JobRunning) as refused, session_factory.begin() as s:
        jobs_repo.refuse_if_running(s)  # nothing runs yet
        with session_factory.begin() as other:  # another process queues one meanwhile
            first = jobs_repo.create_job(other, {}).id
        queued.append(jobs_repo.create_job(s, {}).id)
    assert refused.value.status_code == 409 and not queued
    with session_factory() as s:
        assert [job.id for job in jobs_repo.list_jobs(s)] == [first]


@pytest.mark.parametrize("state", jobs_repo.ACTIVE_STATES)
def test_no_second_active_row_whatever_writes_it(
    engine: Engine, session_factory: sessionmaker[Session], state: str
) -> None:
    with session_factory.begin() as s:
        for ended in ("succeeded", "failed", "cancelled", "interrupted"):
            s.execute(
                text(INSERT_JOB), {"id": ended, "state": ended, "created": CREATED, "beat": None}
            )
        jobs_repo.create_job(s, {})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(INSERT_JOB), {"id": "x", "state": state, "created": CREATED, "beat": None}
        )


def test_migration_0005_ends_all_active_jobs_but_the_last_to_beat(db_url: str) -> None:
    """A database from before the index may hold two active jobs (the race it closes)."""
    engine = make_engine(db_url)
    config = alembic_config()
    jobs = [
        ("queued", "queued", "2026-01-03 00:00:00", None),
        ("stale", "running", "2026-01-01 00:00:00", "2026-01-01 00:05:00"),
        ("live", "running", "2026-01-02 00:00:00", "2026-01-02 00:09:00"),
        ("cancelling", "cancelling", "2026-01-02 00:00:00", "2026-01-02 00:01:00"),
        ("done", "succeeded", "2026-01-04 00:00:00", None),
    ]
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
            for job_id, state, created, beat in jobs:
                values = {"id": job_id, "state": state, "created": created, "beat": beat}
                connection.execute(text(INSERT_JOB), values)
        migrate(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, state, error, finished_at FROM jobs"))
            after = {job_id: (state, error, bool(ended)) for job_id, state, error, ended in rows}
        ended_error = revision.ENDED_ERROR
        assert after == {
            "queued": ("interrupted", ended_error, True),
            "stale": ("interrupted", ended_error, True),
            "live": ("running", None, False),
            "cancelling": ("cancelled", ended_error, True),
            "done": ("succeeded", None, False),
        }
        (index,) = [
            i for i in inspect(engine).get_indexes("jobs") if i["name"] == "uq_jobs_one_active"
        ]
        assert index["unique"] and index["column_names"] == ["slot"]

        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
        assert "slot" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        migrate(engine)  # and up again
        with engine.connect() as connection:
            version = connection.scalar(text("SELECT version_num FROM alembic_version"))
            assert version == head_revision()
    finally:
        engine.dispose()

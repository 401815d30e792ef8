"""PostgreSQL specifics: URL forms, migrations under the advisory lock, racing start-ups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import models_repo, repository
from app.gallery.db import MIGRATION_LOCK_KEY, make_engine, make_session_factory, migrate
from app.gallery.orm import Base
from tests.unit.gallery.revisions import head_revision

MODEL = "arcface-mbf@9cc6e4a75f0e"


def in_threads(works: list[Callable[[], object]]) -> list[BaseException]:
    """Run each of `works` in its own thread, all released together; returns what they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(works))

    def run(work: Callable[[], object]) -> None:
        barrier.wait()
        run_into(errors, work)

    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_url_forms_connect_with_psycopg_3(db_url: str, scheme: str) -> None:
    url = make_url(db_url).set(drivername=scheme).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_migrations_build_the_schema_in_an_empty_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        migrate(engine)
        tables = set(inspect(engine).get_table_names())
        # The ORM's tables (test_migration_matches_the_orm compares their columns), so that a
        # migration adding a table needs no edit here.
        assert {"subjects", "faces", "embeddings", "models", "jobs"} <= tables
        assert tables == {*Base.metadata.tables, "alembic_version"}
        columns = {c["name"]: c for c in inspect(engine).get_columns("faces")}
        assert str(columns["id"]["type"]) == "BIGINT"  # fits the int64 labels of FAISS
        assert "nextval" in str(columns["id"]["default"])
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
    finally:
        engine.dispose()


def test_a_second_start_waits_for_the_migration_lock_then_changes_nothing(db_url: str) -> None:
    first, second = make_engine(db_url), make_engine(db_url)
    try:
        migrate(first)
        with make_session_factory(first).begin() as s:
            repository.create_subject(s, "Ada", {})
        errors: list[BaseException] = []
        with first.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            starting = threading.Thread(target=lambda: run_into(errors, migrate, second))
            starting.start()
            wait_for(lambda: waiting_advisory_locks(first) == 1)
            assert starting.is_alive()
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            holder.commit()
        starting.join(timeout=30)
        assert not starting.is_alive() and errors == []
        with first.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
            assert conn.scalar(text("SELECT count(*) FROM subjects")) == 1
    finally:
        first.dispose()
        second.dispose()


def test_concurrent_start_ups_on_an_empty_database_migrate_once(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(4)]
    try:
        assert in_threads([partial(migrate, engine) for engine in engines]) == []
        with engines[0].connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()


def test_racing_processes_register_a_model_once(engine: Engine) -> None:
    # Replicas starting together each find the packaged model's row missing and insert it.
    factory = make_session_factory(engine)
    errors: list[BaseException] = []
    with factory.begin() as first:
        models_repo.ensure_model(first, MODEL, "arcface-mbf", "9" * 64)
        other = threading.Thread(target=lambda: run_into(errors, register, factory))
        other.start()
        wait_for(lambda: waiting_transactions(engine) == 1)  # on our uncommitted row
    other.join(timeout=30)
    assert errors == []
    with factory() as s:
        assert [m.id for m in models_repo.list_models(s)] == [MODEL]


def register(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        assert models_repo.ensure_model(s, MODEL, "arcface-mbf", "9" * 64).sha256 == "9" * 64


def run_into(errors: list[BaseException], fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def waiting_advisory_locks(engine: Engine) -> int:
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with engine.connect() as conn:
        return int(conn.scalar(text(query)) or 0)


def waiting_transactions(engine: Engine) -> int:
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
    with engine.connect() as conn:
        return int(conn.scalar(text(query)) or 0)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_processes_deleting_one_subject_get_one_204_and_one_404(engine: Engine) -> None:
    """Both deletes answered 204 (an audit): the second read the subject before the first
    committed, and its DELETE then matched no row. Now it waits for the row lock and finds
    the subject gone."""
    migrate(engine)
    factory = make_session_factory(engine)
    with factory.begin() as s:
        subject = repository.create_subject(s, "Ada").id
    first = factory()
    first.begin()
    assert repository.delete_subject(first, subject) == []  # holds the row until it commits
    errors: list[BaseException] = []
    second = threading.Thread(
        target=run_into, args=(errors, partial(_delete_in_new_session, factory, subject))
    )
    second.start()
    time.sleep(0.3)
    assert second.is_alive()  # waiting on the first one's row lock
    first.commit()
    first.close()
    second.join(10)
    assert [type(error).__name__ for error in errors] == ["SubjectNotFound"]


def _delete_in_new_session(factory: sessionmaker[Session], subject: str) -> None:
    with factory.begin() as s:
        repository.delete_subject(s, subject)

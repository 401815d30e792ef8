from __future__ import annotations

import threading
from datetime import UTC
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from app.gallery import repository
from app.gallery.db import engine_url, make_engine, make_session_factory, migrate
from app.gallery.orm import Base, Face
from tests.unit.gallery.revisions import head_revision


def test_migrate_creates_schema_in_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "faces.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)

    assert path.exists()
    tables = set(inspect(engine).get_table_names())
    assert {"subjects", "faces", "embeddings", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
    engine.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://face:p%40ss@db:5432/faces", "postgresql+psycopg"),
        ("postgres://face@db/faces", "postgresql+psycopg"),
        ("postgresql+psycopg://face@db/faces", "postgresql+psycopg"),
        ("postgresql+psycopg2://face@db/faces", "postgresql+psycopg2"),  # asked for: kept
        ("sqlite:///data/faces.db", "sqlite"),
    ],
)
def test_a_url_without_a_driver_gets_psycopg_3(given: str, driver: str) -> None:
    url = engine_url(given)
    assert url.drivername == driver
    # Only the scheme changes: user, password, host, port and database are kept.
    after_scheme = url.render_as_string(hide_password=False).split(":", 1)[1]
    assert after_scheme == given.split(":", 1)[1]


def test_migrate_is_idempotent_and_keeps_data(engine: Engine, db_url: str) -> None:
    factory = make_session_factory(engine)
    with factory.begin() as s:
        repository.create_subject(s, "Ada", {})
    migrate(engine)
    engine.dispose()

    reopened = make_engine(db_url)
    migrate(reopened)
    with make_session_factory(reopened)() as s:
        assert repository.count_subjects(s) == 1
    with reopened.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    reopened.dispose()


def test_migration_matches_the_orm(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_pragmas_are_set_on_every_connection(engine: Engine) -> None:
    for _ in range(2):
        with engine.connect() as conn:
            assert conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert conn.scalar(text("PRAGMA foreign_keys")) == 1
            assert conn.scalar(text("PRAGMA synchronous")) == 2  # FULL: durable on power loss
            assert conn.scalar(text("PRAGMA busy_timeout")) == 30000
        engine.dispose()  # the next loop opens a brand-new connection


def test_database_errors_do_not_carry_the_statement_parameters(engine: Engine) -> None:
    # The errors are logged, and the parameters are names and metadata.
    with pytest.raises(Exception) as raised, engine.connect() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (:name)"), {"name": "Jane Secret"})
    assert "no_such_table" in str(raised.value) and "Jane Secret" not in str(raised.value)
    # PostgreSQL engines likewise (created without connecting).
    assert make_engine("postgresql://face:pw@127.0.0.1:1/face").hide_parameters


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), make_session_factory(engine).begin() as s:
        s.add(
            Face(
                subject_id="no-such-subject",
                box=[0, 0, 1, 1],
                landmarks=[],
                quality={},
                image_sha256="0" * 64,
            )
        )


def test_objects_stay_readable_after_commit_with_utc_timestamps(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory.begin() as s:
        subject = repository.create_subject(s, "Ada", {"team": "a"})
    # expire_on_commit=False: no refresh (and no session) needed to read it.
    assert subject.name == "Ada"
    with factory() as s:
        stored = repository.get_subject(s, subject.id)
        assert stored.created_at.tzinfo == UTC
        assert stored.updated_at.tzinfo == UTC
        assert stored.metadata_ == {"team": "a"}


def test_concurrent_start_ups_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'faces.db'}"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start_up() -> None:
        engine = make_engine(url)
        try:
            barrier.wait()
            migrate(engine)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_migration_0003_folds_the_names_already_stored(tmp_path: Path) -> None:
    from alembic import command

    from app.gallery.db import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")  # a gallery from before name_folded
        connection.execute(
            text(
                "INSERT INTO subjects (id, name, metadata, created_at, updated_at) VALUES "
                "('s1', 'Straße Élodie', '{}', '2026-01-01', '2026-01-01')"
            )
        )
    migrate(engine)
    with make_session_factory(engine)() as s:
        page, total = repository.list_subjects(s, 10, 0, "STRASSE élodie")
        assert total == 1 and page[0][0].name_folded == "strasse elodie"
    engine.dispose()

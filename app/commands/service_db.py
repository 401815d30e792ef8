"""Access, for the offline commands, to the database a service uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery.db import alembic_config, make_engine, make_session_factory, migrate, shown_url


@contextlib.contextmanager
def existing_database(settings: Settings) -> Iterator[tuple[Session | None, str]]:
    """A session on the service's database and its name, or None and why there is none
    to read. Never creates a database: a missing SQLite file just means nothing enrolled."""
    url = make_url(settings.resolved_database_url)
    shown = shown_url(url)
    missing = _missing_file(url)
    if missing is not None:
        yield None, missing
        return
    engine = make_engine(settings.resolved_database_url)
    try:
        try:
            tables = set(inspect(engine).get_table_names())
        except SQLAlchemyError as exc:
            yield None, f"cannot read {shown} ({type(exc).__name__})"
            return
        if "subjects" not in tables:
            yield None, f"{shown} has no subjects table yet"
            return
        with make_session_factory(engine)() as session:
            yield session, shown
    finally:
        engine.dispose()


@contextlib.contextmanager
def service_sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the service's database to write to, created and migrated if need be."""
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def write_problem(settings: Settings) -> str | None:
    """Why the service's database could not take a write from this release: unreachable,
    or at a schema revision it does not know (a newer release's). Found before minutes of
    work that would end in it. None when it can, or does not exist yet (it is created)."""
    url = make_url(settings.resolved_database_url)
    if _missing_file(url) is not None:
        return None
    shown = shown_url(url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            if "alembic_version" not in inspect(connection).get_table_names():
                return None
            revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    except SQLAlchemyError as exc:
        return f"cannot reach {shown} ({type(exc).__name__})"
    finally:
        engine.dispose()
    known = {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if revision is not None and revision not in known:
        return (
            f"{shown} has schema revision {revision}, newer than this release knows; "
            "use the release that serves it"
        )
    return None


def _missing_file(url: URL) -> str | None:
    """Why there is no database yet: a SQLite file that does not exist (created on first
    write); None for any other."""
    database = url.database or ":memory:"
    on_disk = url.get_backend_name() == "sqlite" and database != ":memory:"
    if on_disk and not database.startswith("file:") and not Path(database).is_file():
        return f"no database at {database}"
    return None

"""Access, for the offline commands, to the database a service uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery.db import make_engine, make_session_factory, migrate, shown_url


@contextlib.contextmanager
def existing_database(settings: Settings) -> Iterator[tuple[Session | None, str]]:
    """A session on the service's database and its name, or None and why there is none
    to read. Never creates a database: a missing SQLite file just means nothing enrolled."""
    url = make_url(settings.resolved_database_url)
    shown = shown_url(url)
    database = url.database or ":memory:"
    on_disk = url.get_backend_name() == "sqlite" and database != ":memory:"
    if on_disk and not database.startswith("file:") and not Path(database).is_file():
        yield None, f"no database at {database}"
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

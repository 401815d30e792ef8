"""Database engine, schema migrations and session factory (SQLite default, PostgreSQL by URL)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# The PostgreSQL advisory lock held while migrating: arbitrary ("face"), constant across releases.
MIGRATION_LOCK_KEY = 0x66616365

_WAL_RETRIES = 200  # x 50 ms

_SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=30000",
    # SQLite ignores ON DELETE CASCADE unless this is set on every connection.
    "PRAGMA foreign_keys=ON",
    # FULL syncs the WAL at every commit, so an acknowledged write survives power loss too
    # (NORMAL survives application crashes only). It costs about 0.3 ms a commit here,
    # against tens of milliseconds of inference in an enrolment.
    "PRAGMA synchronous=FULL",
)


# URL schemes that name PostgreSQL but no driver. SQLAlchemy 2.0 gives the first psycopg2
# and refuses the second (which libpq and many hosts use too); both get psycopg 3, the
# driver this package installs.
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def shown_url(url: str | URL) -> str:
    """The URL as it may be printed or logged: its password hidden, whether in the user
    part or in a query parameter (`?password=`, `?sslpassword=`, as libpq also takes)."""
    parsed = make_url(url) if isinstance(url, str) else url
    query = {
        key: "hidden" if "pass" in key.lower() else value for key, value in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


def engine_url(url: str) -> URL:
    """The URL as given, except that a driverless PostgreSQL URL gets psycopg (version 3)."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """Build an engine; SQLite gets its folder created and its pragmas set per connection."""
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A server that accepts and never answers would otherwise hold start-up, or a
        # request, for libpq's own limit of about two minutes. A URL's own
        # ?connect_timeout= still wins.
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        return create_engine(
            parsed, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
        )

    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: database errors are logged, and their parameters are names and
    # metadata, which stay out of the logs.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
            # WAL lets readers (searches, listings) proceed while an enrolment writes.
            _enable_wal(cursor)
        finally:
            cursor.close()

    return engine


def _enable_wal(cursor: Any) -> None:
    # WAL persists in the file, so this only switches a brand-new one. The switch needs an
    # exclusive lock that SQLite refuses at once, without the busy wait, while another
    # start-up is migrating the same new file; so retry for a while.
    for _ in range(_WAL_RETRIES):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def alembic_config() -> Config:
    """An in-memory alembic config pointing at the packaged migrations; no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head; a no-op when it is already there, so safe at every start."""
    config = alembic_config()
    with engine.begin() as connection:
        # Serialise concurrent start-ups (several workers or processes): the second waits
        # for the first to commit, then finds the schema already at head.
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit, so routes can build responses from them.
    return sessionmaker(bind=engine, expire_on_commit=False)

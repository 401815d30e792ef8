"""Alembic environment: migrates the connection handed over by app.gallery.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from app.gallery.orm import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through app.gallery.db.migrate(engine)")
    run_migrations(connection)


main()

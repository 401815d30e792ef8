"""Migration 0011: the calibrations table, and a leftover one replaced rather than a failure."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from app.gallery.db import alembic_config, make_engine


def test_a_leftover_table_from_a_restore_is_replaced_and_the_downgrade_drops_it(
    db_url: str,
) -> None:
    """A database at 0010 that still has a calibrations table, as `pg_restore --clean` of a
    dump made before 0011 over a newer database leaves it: the upgrade used to fail."""
    engine = make_engine(db_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")
            connection.execute(
                text(
                    "INSERT INTO calibrations (model_version, body, stored_at) "
                    "VALUES ('m@old', '{}', '2026-01-01')"
                )
            )
            connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")
            assert connection.scalar(text("SELECT count(*) FROM calibrations")) == 0
            command.downgrade(config, "0010")
            assert "calibrations" not in inspect(connection).get_table_names()
            command.upgrade(config, "0011")
            assert "calibrations" in inspect(connection).get_table_names()
    finally:
        engine.dispose()

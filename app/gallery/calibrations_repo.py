"""Calibration queries: one row of thresholds per model version, replaced whole."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.gallery.orm import StoredCalibration, utcnow


def get(s: Session, model_version: str) -> dict[str, Any] | None:
    return s.scalar(
        select(StoredCalibration.body).where(StoredCalibration.model_version == model_version)
    )


def stamp(s: Session, model_version: str) -> tuple[datetime, dict[str, Any]] | None:
    """When this version's row was last saved, and its body (an edit by hand changes only
    that); None when there is none."""
    row = s.execute(
        select(StoredCalibration.stored_at, StoredCalibration.body).where(
            StoredCalibration.model_version == model_version
        )
    ).first()
    return None if row is None else (row.stored_at, row.body)


def put(s: Session, model_version: str, body: dict[str, Any], *, replace: bool = True) -> bool:
    """Insert this version's row, or replace it (`replace`) or leave it; whether written.
    One statement, so two processes saving at once cannot fail on the key."""
    values = {"model_version": model_version, "body": body, "stored_at": utcnow()}
    insert: postgresql.Insert | sqlite.Insert
    if s.get_bind().dialect.name == "postgresql":
        insert = postgresql.insert(StoredCalibration).values(values)
    else:
        insert = sqlite.insert(StoredCalibration).values(values)
    keys = [StoredCalibration.model_version]
    if replace:
        statement = insert.on_conflict_do_update(
            index_elements=keys, set_={"body": body, "stored_at": values["stored_at"]}
        )
    else:
        statement = insert.on_conflict_do_nothing(index_elements=keys)
    if isinstance(statement, postgresql.Insert):
        return s.execute(statement.returning(StoredCalibration.model_version)).first() is not None
    # The row count, not RETURNING, which SQLite has only since 3.35 (psycopg reports no
    # row count for it).
    return bool(s.connection().execute(statement).rowcount)


def remove(s: Session, model_version: str) -> dict[str, Any] | None:
    """Delete this version's row; its body, or None when there was none."""
    body = get(s, model_version)
    if body is not None:
        s.execute(delete(StoredCalibration).where(StoredCalibration.model_version == model_version))
    return body

"""The calibrations stored in the database that a test's settings name."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from app.config import Settings
from app.gallery.db import make_engine, make_session_factory, migrate
from app.services.calibration import CalibrationStore


def store_for(settings: Settings) -> CalibrationStore:
    """As the service or `python -m app calibrate` would open it: created and migrated.
    No connection stays open between calls, as a restore wants none open."""
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    unpooled = create_engine(settings.resolved_database_url, poolclass=NullPool)
    return CalibrationStore(make_session_factory(unpooled))

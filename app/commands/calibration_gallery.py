"""The gallery size N that `calibrate` spreads the identify FAR over, and where it came from."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from app.commands.service_db import existing_database
from app.config import Settings
from app.gallery import repository


def gallery_size(requested: int | None, settings: Settings) -> tuple[int, str]:
    """N for the open-set threshold, and a sentence saying where it came from.

    The pairs score one photo against one photo, and identify compares a probe with every
    enrolled face (a subject matches on its best one), so N counts faces, not subjects:
    with 3 faces a subject, N = subjects gave a stranger 3x the target's chance of a match.
    """
    if requested is not None:
        return requested, "from --gallery-size"
    count, source = enrolled_faces(settings)
    hint = "the minimum of 1; pass --gallery-size for the gallery you expect"
    if count is None:
        return 1, f"{source}: using {hint}"
    if count < 1:
        return 1, f"no face enrolled in {source}: using {hint}"
    return count, f"faces enrolled now in {source}"


def enrolled_faces(settings: Settings) -> tuple[int | None, str]:
    """Faces enrolled in the service's database (what identify compares a probe with), or
    None and why when there is none to read."""
    with existing_database(settings) as (session, shown):
        if session is None:
            return None, shown
        try:
            return repository.count_faces(session), shown
        except SQLAlchemyError as exc:
            return None, f"cannot read {shown} ({type(exc).__name__})"

"""calibrations_repo: one row per model version, inserted, replaced or kept in one statement."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.gallery import calibrations_repo
from app.services.calibration import CalibrationStore
from tests.unit.services.test_calibration import make_calibration


def test_rows_are_inserted_replaced_or_kept_and_removed(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as s:
        assert calibrations_repo.get(s, "m@1") is None and calibrations_repo.stamp(s, "m@1") is None
        assert calibrations_repo.put(s, "m@1", {"v": 1}) is True
        assert calibrations_repo.put(s, "m@2", {"v": 2}) is True
    with session_factory.begin() as s:
        first = calibrations_repo.stamp(s, "m@1")
        # An import keeps the row there; a save replaces it.
        assert calibrations_repo.put(s, "m@1", {"v": "imported"}, replace=False) is False
        assert calibrations_repo.get(s, "m@1") == {"v": 1}
        assert calibrations_repo.put(s, "m@1", {"v": 3}) is True
    with session_factory() as s:
        assert calibrations_repo.get(s, "m@1") == {"v": 3}
        later = calibrations_repo.stamp(s, "m@1")
        assert first is not None and later is not None and later != first
        assert later[1] == {"v": 3}
    with session_factory.begin() as s:
        assert calibrations_repo.remove(s, "m@1") == {"v": 3}
        assert calibrations_repo.remove(s, "m@1") is None
    with session_factory() as s:
        assert calibrations_repo.get(s, "m@1") is None and calibrations_repo.get(s, "m@2") == {
            "v": 2
        }


def test_a_calibration_round_trips_through_the_store(
    session_factory: sessionmaker[Session],
) -> None:
    """Dates and paths go through the JSON column and come back as they were saved."""
    store = CalibrationStore(session_factory)
    saved = make_calibration("arcface-mbf@abc").model_copy(update={"warnings": ("identify: x.",)})
    store.save(saved)
    assert store.load("arcface-mbf@abc") == saved
    assert store.delete("arcface-mbf@abc") == saved
    assert store.load("arcface-mbf@abc") is None

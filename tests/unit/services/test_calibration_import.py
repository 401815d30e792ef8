"""An older release's calibration.json: imported into the database once, then renamed."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import ModelError
from app.gallery import calibrations_repo
from app.services.calibration import METHOD_GALLERY_ADJUSTED, CalibrationStore
from app.services.calibration_import import (
    LEGACY_FILE,
    file_stamp,
    import_legacy_file,
    set_aside,
)
from tests.calibrations import store_for
from tests.unit.services.test_calibration import make_calibration

# As releases before gallery calibration wrote it: no source, no accepts, no warnings.
OLD_ENTRY = {
    "model_version": "arcface-mbf@abc",
    "verify_threshold": 0.31,
    "verify_far": 0.001,
    "identify_threshold": 0.36,
    "identify_far": 0.001,
    "gallery_size": 20,
    "method": METHOD_GALLERY_ADJUSTED,
    "pairs": "/photos/pairs.csv",
    "impostors": 541,
    "created_at": "2026-11-26T10:00:00Z",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def store(data_dir: Path) -> CalibrationStore:
    return store_for(Settings(data_dir=data_dir))


def test_no_file_imports_nothing(data_dir: Path, store: CalibrationStore) -> None:
    import_legacy_file(data_dir, store.sessions)
    assert store.load("arcface-mbf@abc") is None
    assert file_stamp(data_dir) is None


def test_entries_are_imported_and_the_file_renamed(
    data_dir: Path, store: CalibrationStore, caplog: pytest.LogCaptureFixture
) -> None:
    newer = make_calibration("facenet-vggface2@def", 0.45)
    (data_dir / LEGACY_FILE).write_text(
        json.dumps(
            {"arcface-mbf@abc": OLD_ENTRY, newer.model_version: newer.model_dump(mode="json")}
        )
    )
    with caplog.at_level(logging.WARNING):
        import_legacy_file(data_dir, store.sessions)
    old = store.load("arcface-mbf@abc")
    assert old is not None
    assert (old.source, old.pairs, old.verify_threshold) == (
        "pairs",
        Path("/photos/pairs.csv"),
        0.31,
    )
    assert store.load(newer.model_version) == newer
    assert not (data_dir / LEGACY_FILE).exists()
    [renamed] = data_dir.glob(f"{LEGACY_FILE}.imported-*")
    assert set(json.loads(renamed.read_text())) == {"arcface-mbf@abc", newer.model_version}
    assert "imported arcface-mbf@abc, facenet-vggface2@def" in caplog.text


def test_the_later_calibration_of_a_version_stays(
    data_dir: Path, store: CalibrationStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A row saved after the file's entry (by another process sharing the database, say)
    stays; an entry calibrated after the row (in a process of the older release, while
    others already ran this one) replaces it."""
    current = make_calibration("arcface-mbf@abc", 0.5)
    store.save(current)
    older = make_calibration("other@1", 0.2)
    store.save(older.model_copy(update={"created_at": older.created_at - timedelta(days=1)}))
    entries = {"arcface-mbf@abc": OLD_ENTRY, "other@1": older.model_dump(mode="json")}
    (data_dir / LEGACY_FILE).write_text(json.dumps(entries))
    with caplog.at_level(logging.WARNING):
        import_legacy_file(data_dir, store.sessions)
    assert store.load("arcface-mbf@abc") == current
    assert store.load("other@1") == older
    assert "imported other@1" in caplog.text
    assert "(arcface-mbf@abc: a later calibration there, kept)" in caplog.text
    assert not (data_dir / LEGACY_FILE).exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"arcface-mbf@abc": {**OLD_ENTRY, "verify_threshold": 1.5}}),
        json.dumps({"another@1": OLD_ENTRY}),  # an entry under another version's key
    ],
)
def test_an_unreadable_file_is_refused_and_kept(
    data_dir: Path, store: CalibrationStore, content: str
) -> None:
    """Serving the defaults in its place would silently loosen the FAR it held."""
    (data_dir / LEGACY_FILE).write_text(content)
    with pytest.raises(ModelError, match="fix or delete it"):
        import_legacy_file(data_dir, store.sessions)
    assert (data_dir / LEGACY_FILE).read_text() == content
    assert store.load("arcface-mbf@abc") is None and store.load("another@1") is None


def test_a_folder_in_its_place_is_unreadable_and_can_be_set_aside(
    data_dir: Path, store: CalibrationStore
) -> None:
    (data_dir / LEGACY_FILE).mkdir()
    with pytest.raises(ModelError, match="cannot be read"):
        import_legacy_file(data_dir, store.sessions)
    aside = set_aside(data_dir)
    assert (
        aside is not None and aside.is_dir() and aside.name.startswith(f"{LEGACY_FILE}.unreadable-")
    )
    import_legacy_file(data_dir, store.sessions)  # nothing left to import


def test_set_aside_leaves_a_readable_file_or_none(data_dir: Path) -> None:
    assert set_aside(data_dir) is None
    (data_dir / LEGACY_FILE).write_text("{}")
    assert set_aside(data_dir) is None
    assert (data_dir / LEGACY_FILE).read_text() == "{}"
    stamp = file_stamp(data_dir)
    (data_dir / LEGACY_FILE).write_text("{broken")
    assert file_stamp(data_dir) != stamp
    aside = set_aside(data_dir)
    assert aside is not None and aside.read_text() == "{broken"
    assert set_aside(data_dir) is None


def test_an_unreadable_row_is_left_for_an_operator_and_said_so(
    data_dir: Path, store: CalibrationStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {**make_calibration("arcface-mbf@abc").model_dump(mode="json"), "impostors": 0}
    with store.sessions.begin() as session:
        calibrations_repo.put(session, "arcface-mbf@abc", broken)
    (data_dir / LEGACY_FILE).write_text(json.dumps({"arcface-mbf@abc": OLD_ENTRY}))
    with caplog.at_level(logging.WARNING):
        import_legacy_file(data_dir, store.sessions)
    assert "imported no calibration" in caplog.text
    assert "(arcface-mbf@abc: an unreadable row there, kept; delete or recalibrate it)" in (
        caplog.text
    )
    with pytest.raises(ModelError, match="unreadable"):
        store.load("arcface-mbf@abc")

"""CalibrationStore: round trip, one row per model version, unreadable rows refused, and
rows of other releases (rolling upgrades) read by their format."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.config import Settings
from app.errors import ModelError
from app.gallery import calibrations_repo
from app.gallery.orm import StoredCalibration
from app.services.calibration import METHOD_GALLERY_ADJUSTED, Calibration, CalibrationStore
from app.services.calibration_import import LEGACY_FILE, import_legacy_file
from tests.calibrations import store_for


def make_calibration(version: str, verify: float = 0.3) -> Calibration:
    return Calibration(
        model_version=version,
        verify_threshold=verify,
        verify_far=1e-3,
        identify_threshold=verify + 0.1,
        identify_far=1e-2,
        gallery_size=20,
        method=METHOD_GALLERY_ADJUSTED,
        pairs=Path("/photos/pairs.csv"),
        impostors=541,
    )


@pytest.fixture
def store(tmp_path: Path) -> CalibrationStore:
    return store_for(Settings(data_dir=tmp_path / "data"))


def _edit(store: CalibrationStore, version: str, body: object) -> None:
    """Change a row behind the store's back, as a hand edit of the database would."""
    with store.sessions.begin() as session:
        session.execute(
            update(StoredCalibration)
            .where(StoredCalibration.model_version == version)
            .values(body=body)
        )


def test_nothing_stored_is_none(store: CalibrationStore) -> None:
    assert store.load("arcface-mbf@abc") is None
    assert store.stamp("arcface-mbf@abc") is None
    assert store.delete("arcface-mbf@abc") is None


def test_round_trip_through_a_second_process_view(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    saved = make_calibration("arcface-mbf@abc")
    store_for(settings).save(saved)
    other = store_for(settings)  # another engine on the same file: another process's view
    assert other.load("arcface-mbf@abc") == saved
    assert other.load("facenet-vggface2@def") is None


def test_two_models_coexist_and_a_save_replaces_only_its_own(store: CalibrationStore) -> None:
    store.save(make_calibration("arcface-mbf@abc", 0.30))
    store.save(make_calibration("facenet-vggface2@def", 0.45))
    first = store.stamp("arcface-mbf@abc")
    store.save(make_calibration("arcface-mbf@abc", 0.33))
    assert store.load("arcface-mbf@abc").verify_threshold == 0.33  # type: ignore[union-attr]
    assert store.load("facenet-vggface2@def").verify_threshold == 0.45  # type: ignore[union-attr]
    later = store.stamp("arcface-mbf@abc")
    assert first is not None and later is not None and later != first
    # The same calibration saved again (another process, say) is a change too.
    store.save(store.load("arcface-mbf@abc"))  # type: ignore[arg-type]
    assert store.stamp("arcface-mbf@abc") != later
    later = store.stamp("arcface-mbf@abc")
    _edit(store, "arcface-mbf@abc", {"by": "hand"})
    assert store.stamp("arcface-mbf@abc") != later


def test_delete_removes_only_its_own(store: CalibrationStore) -> None:
    saved = make_calibration("a@1")
    store.save(saved)
    store.save(make_calibration("b@2"))
    assert store.delete("a@1") == saved
    assert store.load("a@1") is None and store.stamp("a@1") is None
    assert store.load("b@2") is not None


def test_thresholds_outside_cosine_range_are_rejected() -> None:
    with pytest.raises(ValueError):
        make_calibration("model@x", verify=1.5)


def test_a_gallery_calibration_needs_no_pairs_file(store: CalibrationStore) -> None:
    saved = make_calibration("arcface-mbf@abc").model_copy(update={"source": "gallery"})
    saved = Calibration.model_validate({**saved.model_dump(), "pairs": None})
    store.save(saved)
    loaded = store.load("arcface-mbf@abc")
    assert loaded == saved and loaded.source == "gallery" and loaded.pairs is None


def test_a_calibration_from_pairs_must_name_them() -> None:
    fields = make_calibration("model@x").model_dump() | {"pairs": None}
    with pytest.raises(ValueError, match="pairs file"):
        Calibration.model_validate(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"verify_accepts": 542},  # more accepts than impostor scores
        {"identify_accepts": 542},
        {"verify_threshold": "high"},
        {"model_version": "another@1"},  # a row under another version's key
        {"format": "1"},
        {"format": 0},
    ],
)
def test_a_row_edited_into_nonsense_is_unreadable_and_can_be_replaced_or_deleted(
    store: CalibrationStore, change: dict[str, object]
) -> None:
    """It must pause decisions (ModelError, 503), not crash start-up or serve nonsense; a
    new calibration replaces it, and a delete removes it while saying it was unreadable."""
    good = make_calibration("model@x")
    store.save(good)
    _edit(store, "model@x", {**good.model_dump(mode="json"), **change})
    with pytest.raises(ModelError, match="unreadable"):
        store.load("model@x")
    store.save(good)
    assert store.load("model@x") == good
    _edit(store, "model@x", {**good.model_dump(mode="json"), **change})
    with pytest.raises(ModelError, match="unreadable"):
        store.delete("model@x")
    assert store.stamp("model@x") is None


def _row(store: CalibrationStore, version: str) -> dict[str, object]:
    with store.sessions() as session:
        body = calibrations_repo.get(session, version)
    assert body is not None
    return body


def test_a_saved_calibration_row_is_format_1_without_its_number(store: CalibrationStore) -> None:
    """The release before formats refuses keys it does not know (extra="forbid"): rows this
    one writes must stay readable to it during a rolling upgrade."""
    saved = make_calibration("arcface-mbf@abc")
    store.save(saved)
    assert _row(store, "arcface-mbf@abc") == _without_design_effects(saved)
    assert store.load("arcface-mbf@abc") == saved
    # A calibration that measured its design effects stores them (that release refuses it).
    measured = saved.model_copy(update={"verify_design_effect": 3.2})
    store.save(measured)
    assert _row(store, "arcface-mbf@abc")["verify_design_effect"] == 3.2
    assert "identify_design_effect" not in _row(store, "arcface-mbf@abc")
    assert store.load("arcface-mbf@abc") == measured


def _without_design_effects(calibration: Calibration) -> dict[str, Any]:
    """The row of a calibration without design effects: the keys rows had before them."""
    body = calibration.model_dump(mode="json")
    assert body.pop("verify_design_effect") is body.pop("identify_design_effect") is None
    return body


def test_a_row_without_format_is_format_1(store: CalibrationStore) -> None:
    """Rows saved by releases before the format have none: they read as format 1 does."""
    saved = make_calibration("arcface-mbf@abc")
    store.save(saved)
    for body in (saved.model_dump(mode="json"), {"format": 1, **saved.model_dump(mode="json")}):
        _edit(store, "arcface-mbf@abc", body)
        assert _row(store, "arcface-mbf@abc") == body
        assert store.load("arcface-mbf@abc") == saved


def test_an_older_releases_file_is_imported_as_format_1(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = store_for(settings)
    old = _without_design_effects(make_calibration("arcface-mbf@abc"))
    (settings.data_dir / LEGACY_FILE).write_text(json.dumps({"arcface-mbf@abc": old}))
    import_legacy_file(settings.data_dir, store.sessions)
    assert _row(store, "arcface-mbf@abc") == old


def test_fields_a_newer_release_added_are_dropped_and_named_once(
    store: CalibrationStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer release that adds a field keeping the thresholds' meaning keeps format 1:
    this release serves its row, without the field, and logs the field's name once, not
    at each re-read (every gallery recount, every GET of the admin endpoint)."""
    saved = make_calibration("newer@fields")
    store.save(saved)
    _edit(store, "newer@fields", {**_row(store, "newer@fields"), "score_norm": "z", "n": 3})
    caplog.set_level(logging.WARNING, logger="app.services.calibration")
    assert store.load("newer@fields") == saved
    assert store.load("newer@fields") == saved
    dropped = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(dropped) == 1 and "newer@fields" in dropped[0] and "(n, score_norm;" in dropped[0]
    assert store.delete("newer@fields") == saved


def test_a_calibration_without_design_effects_is_named_once(
    store: CalibrationStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Calibrations stored before design effects were measured state FARs as if every
    impostor score were independent: the operator is told, once, to calibrate again."""
    caplog.set_level(logging.WARNING, logger="app.services.calibration")
    store.save(make_calibration("older@stop23"))
    store.save(make_calibration("newer@stop24").model_copy(update={"verify_design_effect": 2.0}))
    for _ in range(2):
        store.load("older@stop23")
        store.load("newer@stop24")
    said = [r.getMessage() for r in caplog.records if "calibrate again" in r.getMessage()]
    assert len(said) == 1 and "older@stop23" in said[0] and "independent trial" in said[0]


def test_a_newer_format_is_refused_as_written_by_a_newer_release(store: CalibrationStore) -> None:
    """A newer release that changes what the thresholds mean bumps the format: this release
    must not serve them under the old meaning. It pauses decisions, as for a broken row."""
    store.save(make_calibration("arcface-mbf@abc"))
    _edit(store, "arcface-mbf@abc", {**_row(store, "arcface-mbf@abc"), "format": 2})
    newer = r"written by a newer release \(format 2; this release reads format 1\)"
    with pytest.raises(ModelError, match=newer):
        store.load("arcface-mbf@abc")
    with pytest.raises(ModelError, match=newer):
        store.delete("arcface-mbf@abc")
    assert store.stamp("arcface-mbf@abc") is None


def _save_many(data_dir: str, prefix: str, count: int) -> None:
    store = store_for(Settings(data_dir=Path(data_dir)))
    for n in range(count):
        store.save(make_calibration(f"{prefix}@{n % 5}", 0.2 + n / 1000))


def test_two_processes_saving_the_same_versions_at_once_never_fail(tmp_path: Path) -> None:
    """The service and `python -m app calibrate` (or two service processes) insert and
    replace rows of the same versions: one statement each, so neither fails on the key."""
    data_dir = tmp_path / "data"
    store_for(Settings(data_dir=data_dir))  # the schema, before both start
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_many, args=(str(data_dir), "m", 40)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    store = store_for(Settings(data_dir=data_dir))
    with store.sessions() as session:
        assert session.query(StoredCalibration).count() == 5

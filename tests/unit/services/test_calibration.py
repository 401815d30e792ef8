"""CalibrationStore: round trip, one entry per model version, atomic JSON writes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from app.errors import ModelError
from app.services.calibration import (
    CALIBRATION_FILE,
    METHOD_GALLERY_ADJUSTED,
    Calibration,
    CalibrationStore,
)


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


def _files(folder: Path) -> list[str]:
    """What a folder holds besides the lock file that every change takes."""
    return sorted(p.name for p in folder.iterdir() if p.name != f".{CALIBRATION_FILE}.lock")


def test_load_without_a_file_is_none(tmp_path: Path) -> None:
    assert CalibrationStore(tmp_path / "missing").load("arcface-mbf@abc") is None


def test_round_trip(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / "data")
    saved = make_calibration("arcface-mbf@abc")
    store.save(saved)
    assert CalibrationStore(tmp_path / "data").load("arcface-mbf@abc") == saved
    assert store.load("facenet-vggface2@def") is None


def test_two_models_coexist_and_a_save_replaces_only_its_own(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path)
    store.save(make_calibration("arcface-mbf@abc", 0.30))
    store.save(make_calibration("facenet-vggface2@def", 0.45))
    store.save(make_calibration("arcface-mbf@abc", 0.33))
    loaded = store.load_all()
    assert set(loaded) == {"arcface-mbf@abc", "facenet-vggface2@def"}
    assert loaded["arcface-mbf@abc"].verify_threshold == 0.33
    assert loaded["facenet-vggface2@def"].verify_threshold == 0.45


def test_file_is_valid_json_after_each_save_with_no_temp_files_left(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path)
    for i in range(3):
        store.save(make_calibration(f"model@{i}", 0.2 + i / 10))
        content = json.loads((tmp_path / CALIBRATION_FILE).read_text())
        assert sorted(content) == [f"model@{j}" for j in range(i + 1)]
        assert content[f"model@{i}"]["verify_threshold"] == pytest.approx(0.2 + i / 10)
    assert _files(tmp_path) == [CALIBRATION_FILE]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CalibrationStore(tmp_path)
    store.save(make_calibration("model@old"))
    before = (tmp_path / CALIBRATION_FILE).read_bytes()

    def crash(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("app.services.calibration.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(make_calibration("model@new"))
    assert (tmp_path / CALIBRATION_FILE).read_bytes() == before
    assert _files(tmp_path) == [CALIBRATION_FILE]


def test_corrupt_file_is_refused_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    store = CalibrationStore(tmp_path)
    with pytest.raises(ModelError, match="unreadable"):
        store.load("model@x")
    with pytest.raises(ModelError):
        store.save(make_calibration("model@x"))
    assert (tmp_path / CALIBRATION_FILE).read_text() == "{not json"


def test_thresholds_outside_cosine_range_are_rejected() -> None:
    with pytest.raises(ValueError):
        make_calibration("model@x", verify=1.5)


def test_a_file_written_before_gallery_calibration_still_loads(tmp_path: Path) -> None:
    old = {
        "arcface-mbf@abc": {
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
    }
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(old))
    loaded = CalibrationStore(tmp_path).load("arcface-mbf@abc")
    assert loaded is not None
    assert (loaded.source, loaded.pairs, loaded.verify_threshold) == (
        "pairs",
        Path("/photos/pairs.csv"),
        0.31,
    )


def test_a_gallery_calibration_needs_no_pairs_file(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path)
    saved = make_calibration("arcface-mbf@abc").model_copy(update={"source": "gallery"})
    saved = Calibration.model_validate({**saved.model_dump(), "pairs": None})
    store.save(saved)
    loaded = store.load("arcface-mbf@abc")
    assert loaded == saved and loaded.source == "gallery" and loaded.pairs is None


def test_a_calibration_from_pairs_must_name_them() -> None:
    fields = make_calibration("model@x").model_dump() | {"pairs": None}
    with pytest.raises(ValueError, match="pairs file"):
        Calibration.model_validate(fields)


def test_a_file_that_cannot_be_opened_is_unreadable_too(tmp_path: Path) -> None:
    """A folder in its place (or no permission) raised OSError, which stopped the model
    watcher's tick instead of pausing decisions."""
    (tmp_path / CALIBRATION_FILE).mkdir()
    store = CalibrationStore(tmp_path)
    with pytest.raises(ModelError, match="cannot be read"):
        store.load("model@x")
    aside = store.set_aside()
    assert aside.is_dir() and not (tmp_path / CALIBRATION_FILE).exists()
    assert store.load("model@x") is None


def _save_many(data_dir: str, prefix: str, count: int) -> None:
    store = CalibrationStore(Path(data_dir))
    for n in range(count):
        store.save(make_calibration(f"{prefix}@{n}"))


def test_two_processes_saving_at_once_lose_no_entry(tmp_path: Path) -> None:
    """The service and `python -m app calibrate` each read, change and rewrite the file;
    without the lock one of them wrote over the other's new entries."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_many, args=(str(tmp_path), name, 40)) for name in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    assert len(CalibrationStore(tmp_path).load_all()) == 80


def test_set_aside_leaves_a_file_another_process_has_set_aside_or_replaced(
    tmp_path: Path,
) -> None:
    store = CalibrationStore(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{broken")
    first = store.set_aside()
    assert first is not None and first.read_text() == "{broken"
    assert store.set_aside() is None  # already gone: no error
    # Replaced by a good file after this process found it unreadable: kept, not moved.
    store.save(make_calibration("model@new"))
    assert store.set_aside() is None
    assert store.load("model@new") is not None
    assert len(list(tmp_path.glob(f"{CALIBRATION_FILE}.unreadable-*"))) == 1


def test_more_accepts_than_scores_is_an_unreadable_file(tmp_path: Path) -> None:
    """Edited by hand: it must pause decisions like any unreadable file, not crash start-up
    when the FAR is stated."""
    entry = make_calibration("model@x").model_dump(mode="json")
    (tmp_path / CALIBRATION_FILE).write_text(
        json.dumps({"model@x": {**entry, "verify_accepts": 542}})
    )
    with pytest.raises(ModelError, match="unreadable"):
        CalibrationStore(tmp_path).load("model@x")
    (tmp_path / CALIBRATION_FILE).write_text(
        json.dumps({"model@x": {**entry, "identify_accepts": 542}})
    )
    with pytest.raises(ModelError, match="unreadable"):
        CalibrationStore(tmp_path).load("model@x")

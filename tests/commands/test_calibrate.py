"""`python -m app calibrate` on a small real subset: stored thresholds keep their FAR, and
thresholds whose FAR the pairs cannot measure are stored only with --force."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from app.commands import calibrate
from app.commands.calibrate_inputs import MAX_GALLERY_SIZE
from app.config import Settings
from app.evaluation.pair_scores import Embeddings, score_pairs
from app.evaluation.pairs import read_pairs
from app.gallery import repository
from app.gallery.db import make_engine, make_session_factory, migrate
from app.pipeline.analyzer import FacePipeline
from app.services.calibration import METHOD_GALLERY_ADJUSTED
from app.services.calibration_reliability import is_reliable
from tests.calibrations import store_for
from tests.commands.test_import_files import writers_for
from tests.unit.services.test_calibration import make_calibration


def test_stored_thresholds_hold_the_target_far_on_the_pairs(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    subset_pairs: Path,
    subset_embeddings: Embeddings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(
        "calibrate",
        "--pairs",
        subset_pairs,
        "--root",
        shared_faces,
        "--target-far",
        "0.05",
        "--identify-target-far",
        "0.1",
        "--gallery-size",
        "4",
        # 49 impostor pairs cannot measure 0.05 (about 200 are needed).
        "--force",
    )
    assert calibrate.run(args, settings, pipeline) == 0

    stored = store_for(settings).load(pipeline.embedder.version)
    assert stored is not None
    assert (stored.verify_far, stored.identify_far, stored.gallery_size) == (0.05, 0.1, 4)
    assert stored.method == METHOD_GALLERY_ADJUSTED
    assert stored.pairs == subset_pairs.resolve()

    scored = score_pairs(read_pairs(subset_pairs, shared_faces), subset_embeddings)
    impostors = scored.impostor_scores
    # 49 of the subset's impostor pairs have a face on both sides.
    assert stored.impostors == impostors.size == 49
    assert np.mean(impostors >= stored.verify_threshold) <= 0.05
    # Per comparison 1 - 0.9 ** (1/4) = 2.6%, stricter than the verify target of 5%.
    assert np.mean(impostors >= stored.identify_threshold) <= 1 - 0.9 ** (1 / 4)
    assert stored.identify_threshold >= stored.verify_threshold

    printed = capsys.readouterr().out
    assert "achieved FAR" in printed and "N=4 (from --gallery-size)" in printed
    # How many independent scores they count as is measured and stored (clustered_rate.py;
    # the full shared set's are 3.2, these few pairs' about 1).
    assert stored.verify_design_effect is not None and stored.verify_design_effect >= 1
    assert stored.identify_design_effect is not None and stored.identify_design_effect >= 1
    assert "verify: 49 impostor pairs cannot measure a FAR of 0.05" in printed
    assert printed.rstrip().endswith(", unreliable (--force)")
    assert not is_reliable(stored)


def test_unmeasurable_targets_store_nothing_and_the_smallest_named_store_unforced(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    subset_pairs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = store_for(settings)
    earlier = make_calibration(pipeline.embedder.version)
    store.save(earlier)
    before = store.stamp(earlier.model_version)

    def calibrate_at(*targets: str) -> int:
        argv = ("--pairs", subset_pairs, "--root", shared_faces, "--gallery-size", "4")
        return calibrate.run(parse("calibrate", *argv, *targets), settings, pipeline)

    assert calibrate_at("--target-far", "0.05") == 1
    captured = capsys.readouterr()
    assert store.stamp(earlier.model_version) == before  # the calibration serving stays
    assert "responses would state verify FAR" in captured.out
    assert "verify: 49 impostor pairs cannot measure a FAR of 0.05" in captured.out
    assert "identify: 49 impostor pairs cannot measure a FAR of 0.05 at N=4" in captured.out
    last = captured.err.splitlines()[-1]  # after the embedding progress bar
    assert last.startswith("not stored: its FARs cannot be measured; add impostor")
    assert "pass --force to store it anyway" in captured.err
    # 10/49 per pair; for identify over N=4 comparisons, 1 - (1 - 10/49)^4, both rounded up.
    smallest = re.findall(r"(--[a-z-]+) >= ([0-9.]+)", captured.err)
    assert smallest == [("--target-far", "0.205"), ("--identify-target-far", "0.599")]

    assert calibrate_at(*(part for pair in smallest for part in pair)) == 0
    stored = store.load(pipeline.embedder.version)
    assert stored is not None and (stored.verify_far, stored.identify_far) == (0.205, 0.599)
    assert is_reliable(stored)
    printed = capsys.readouterr().out
    assert "unreliable" not in printed and "responses will state" in printed


def test_target_below_resolution_is_reported(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pairs = tmp_path / "tiny.csv"
    amy, howard = "faceapi_js/amy/amy{}.png", "faceapi_js/howard/howard1.png"
    pairs.write_text(
        f"path_a,path_b,same\n{amy.format(1)},{amy.format(2)},1\n"
        f"{amy.format(1)},{howard},0\n{amy.format(2)},{howard},0\n"
    )
    # An older release's unreadable calibration file, which pauses the service's decisions:
    # a new calibration sets it aside, as the admin endpoint's does.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "calibration.json").write_text("{broken")
    argv = ("calibrate", "--pairs", pairs, "--root", shared_faces)
    # Refused: nothing is written, and no database is created for it.
    assert calibrate.run(parse(*argv), settings, pipeline) == 1
    assert not settings.data_dir.joinpath("faces.db").exists()
    assert (settings.data_dir / "calibration.json").read_text() == "{broken"
    refused = capsys.readouterr().err
    assert "add impostor pairs (same=0) to --pairs, or pass --force" in refused
    assert ">=" not in refused  # 2 pairs can measure no FAR below 1
    assert calibrate.run(parse(*argv, "--force"), settings, pipeline) == 0
    stored = store_for(settings).load(pipeline.embedder.version)
    assert stored is not None and stored.verify_far == 0.001 and stored.impostors == 2
    captured = capsys.readouterr()
    printed = captured.out
    assert f"stored in {settings.resolved_database_url}, unreliable (--force)" in printed
    [aside] = settings.data_dir.glob("calibration.json.unreadable-*")
    assert aside.read_text() == "{broken"
    assert f"note: the unreadable calibration.json of an older release is now {aside.name}" in (
        printed
    )
    assert "below the resolution of 2 impostor pairs" in printed
    assert "achieved FAR 0 (0/2" in printed
    assert "verify: 2 impostor pairs cannot measure a FAR of 0.001; about 10000" in printed
    # Both impostor pairs compare Amy with Howard: one trial, whose 95% bound with none
    # through is 1 - 0.05. (As two independent ones it was 1 - 0.05^(1/2) = 0.777.)
    assert "responses will state verify FAR 0.95:" in printed
    assert "they count as 1 independent one, design effect 2)" in printed
    assert "responses will state identify FAR 0.95 at N=1" in printed
    assert "no database at" in printed and "N=1" in printed


def test_gallery_size_defaults_to_enrolled_faces(settings: Settings) -> None:
    size, why = calibrate.gallery_size(None, settings)
    assert size == 1 and "no database" in why
    assert not settings.data_dir.exists(), "looking must not create a database"

    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        size, why = calibrate.gallery_size(None, settings)
        assert size == 1 and "no face enrolled" in why
        # Identify compares a probe with every face: "ada" has two, "dee" none.
        for name, faces in (("ada", 2), ("bob", 1), ("cy", 1), ("dee", 0)):
            subject = repository.create_subject(session, name)
            for n in range(faces):
                repository.add_face(
                    session,
                    subject.id,
                    box=[0, 0, 10, 10],
                    landmarks=[[1, 1]] * 5,
                    quality={},
                    image_sha256=f"{name}{n}",
                    crop=None,
                    crop_landmarks=None,
                    model="m@1",
                    vector=np.full(512, 512**-0.5, dtype=np.float32),
                )
        session.commit()
    engine.dispose()
    size, why = calibrate.gallery_size(None, settings)
    assert size == 4 and "faces enrolled now" in why
    assert calibrate.gallery_size(7, settings) == (7, "from --gallery-size")


def test_rejects_a_target_outside_zero_one(parse, settings: Settings, tmp_path: Path) -> None:
    args = parse(
        "calibrate", "--pairs", tmp_path / "p.csv", "--root", tmp_path, "--target-far", "1"
    )
    assert calibrate.run(args, settings) == 2
    # 0 is refused too, not mistaken for "not given" (which falls back to --target-far).
    args = parse(
        "calibrate", "--pairs", tmp_path / "p.csv", "--root", tmp_path, "--identify-target-far", "0"
    )
    assert calibrate.run(args, settings) == 2
    # Below the smallest measurable target: refused before anything is loaded.
    args = parse(
        "calibrate", "--pairs", tmp_path / "p.csv", "--root", tmp_path, "--target-far", "1e-10"
    )
    assert calibrate.run(args, settings) == 2


@pytest.mark.parametrize("batch", ["0", "-1"])
def test_batch_below_one_is_an_argparse_error(
    parse, tmp_path: Path, capsys: pytest.CaptureFixture[str], batch: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("calibrate", "--pairs", tmp_path / "p.csv", "--root", tmp_path, "--batch", batch)
    assert exited.value.code == 2
    assert f"argument --batch: must be at least 1, got {batch}" in capsys.readouterr().err


def test_pairs_without_an_impostor_are_refused_before_any_model_loads(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\na.jpg,b.jpg,1\nb.jpg,c.jpg,1\n")
    args = parse("calibrate", "--pairs", pairs, "--root", tmp_path, "--target-far", "0.05")
    assert calibrate.run(args, settings) == 2
    assert f"no impostor pair (same=0) in {pairs}; cannot calibrate" in capsys.readouterr().err
    assert not settings.data_dir.exists()


def test_a_pairs_file_with_a_byte_order_mark_is_read(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"\xef\xbb\xbfpath_a,path_b,same\na.jpg,b.jpg,1\n")
    args = parse("calibrate", "--pairs", pairs, "--root", tmp_path, "--target-far", "0.05")
    # Read past the header to its labels: the BOM did not hide the path_a column.
    assert calibrate.run(args, settings) == 2
    assert "no impostor pair (same=0) in" in capsys.readouterr().err


def test_an_unreadable_image_is_left_out_not_fatal(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for person in ("amy", "howard"):
        for n in (1, 2):
            name = f"{person}{n}.png"
            (tmp_path / name).write_bytes(
                (shared_faces / "faceapi_js" / person / name).read_bytes()
            )
    (tmp_path / "corrupt.jpg").write_bytes(b"garbage")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "path_a,path_b,same\namy1.png,amy2.png,1\namy1.png,howard1.png,0\n"
        "amy2.png,howard2.png,0\namy1.png,corrupt.jpg,0\n"
    )
    argv = ("--pairs", pairs, "--root", tmp_path, "--target-far", "0.05", "--force")
    assert calibrate.run(parse("calibrate", *argv), settings, pipeline) == 0

    stored = store_for(settings).load(pipeline.embedder.version)
    assert stored is not None and stored.impostors == 2
    printed = capsys.readouterr().out
    assert "1 excluded because 0 image(s) had no face and 1 could not be read" in printed
    assert f"unreadable, left out: {tmp_path / 'corrupt.jpg'} (" in printed


@pytest.fixture
def photos(shared_faces: Path, tmp_path: Path) -> Path:
    """A folder of four real photos: amy1, amy2, howard1, howard2 (.png)."""
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("amy1", "amy2", "howard1", "howard2"):
        person = name.rstrip("12")
        shutil.copy(shared_faces / "faceapi_js" / person / f"{name}.png", root)
    return root


def test_missing_photos_are_refused_before_any_model_loads_and_nothing_is_stored(
    parse,
    settings: Settings,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    pairs = tmp_path / "pairs.csv"
    # Two typos: once left out as unreadable, the rest was calibrated on and stored.
    pairs.write_text(
        "path_a,path_b,same\namy1.png,amy2.png,1\namy1.png,howard1.png,0\n"
        "amy2.png,howrad1.png,0\nhoward2.png,amy1.pgn,0\n"
    )
    args = parse("calibrate", "--pairs", pairs, "--root", photos, "--target-far", "0.5")
    assert calibrate.run(args, settings) == 1
    assert capsys.readouterr().err.strip() == (
        f"calibrate failed: 2 photo(s) named in {pairs} are missing or not files: "
        f"{photos / 'howrad1.png'}, {photos / 'amy1.pgn'}"
    )
    assert not settings.data_dir.exists()


def test_a_fifo_photo_is_refused_not_read(
    parse,
    settings: Settings,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    os.mkfifo(photos / "pipe.jpg")  # opened, it waits for a writer forever
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\namy1.png,amy2.png,1\namy1.png,pipe.jpg,0\n")
    args = parse("calibrate", "--pairs", pairs, "--root", photos, "--target-far", "0.5")
    assert calibrate.run(args, settings) == 1
    assert "1 photo(s) named in" in (err := capsys.readouterr().err)
    assert f"are missing or not files: {photos / 'pipe.jpg'}" in err


def test_a_fifo_pairs_file_is_refused_not_read(
    parse,
    settings: Settings,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    fifo = tmp_path / "pairs.csv"
    os.mkfifo(fifo)
    args = parse("calibrate", "--pairs", fifo, "--root", photos, "--target-far", "0.5")
    with writers_for([fifo]):  # read, it would be empty: exit 1, not the 2 of a usage error
        assert calibrate.run(args, settings) == 2
    assert capsys.readouterr().err.strip() == f"--pairs {fifo} is not a file"


def test_a_bad_root_is_a_usage_error_before_any_model_loads(
    parse,
    settings: Settings,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\namy1.png,amy2.png,1\namy1.png,howard1.png,0\n")
    for root, problem in ((tmp_path / "nowhere", "does not exist"), (pairs, "is not a folder")):
        args = parse("calibrate", "--pairs", pairs, "--root", root, "--target-far", "0.5")
        assert calibrate.run(args, settings) == 2
        assert capsys.readouterr().err.strip() == f"--root {root} {problem}"
    assert not settings.data_dir.exists()


def test_gallery_size_is_capped_by_argparse(
    parse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("calibrate", "--pairs", tmp_path / "p.csv", "--root", tmp_path, "--gallery-size")
    assert parse(*argv, MAX_GALLERY_SIZE).gallery_size == MAX_GALLERY_SIZE
    # 10**310 faces overflowed the per-comparison FAR: a traceback, after the embedding.
    for size, problem in (
        (10**310, f"must be at most {MAX_GALLERY_SIZE}"),
        (MAX_GALLERY_SIZE + 1, f"must be at most {MAX_GALLERY_SIZE}"),
        (0, "must be at least 1, got 0"),
    ):
        with pytest.raises(SystemExit) as exited:
            parse(*argv, size)
        assert exited.value.code == 2
        assert f"argument --gallery-size: {problem}" in capsys.readouterr().err


def test_frr_is_not_applicable_without_genuine_pairs(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\namy1.png,howard1.png,0\namy2.png,howard2.png,0\n")
    args = parse("calibrate", "--pairs", pairs, "--root", photos, "--target-far", "0.5")
    assert calibrate.run(args, settings, pipeline) == 1  # 2 pairs measure no FAR
    printed = capsys.readouterr().out
    assert "(0 genuine, 2 impostor)" in printed
    # An FRR of 0.0000 read as "no genuine pair rejected", of none.
    assert "FRR 0" not in printed
    assert printed.count("FRR n/a (no genuine pairs)") == 2


def test_a_database_it_cannot_write_is_refused_before_any_model_loads(
    parse,
    settings: Settings,
    shared_faces: Path,
    subset_pairs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The calibration is kept in the service's database, for every process to serve: one
    that cannot be reached, or that a newer release migrated, is found in a second, not
    after minutes of embedding (no pipeline is passed: loading one would take seconds)."""
    argv = ("calibrate", "--pairs", subset_pairs, "--root", shared_faces, "--force")
    unreachable = settings.model_copy(
        update={"database_url": "postgresql://face:secret@127.0.0.1:1/face"}
    )
    assert calibrate.run(parse(*argv), unreachable) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "calibrate failed: cannot reach postgresql://face:***@127.0.0.1:1/face (OperationalError)"
    )
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert calibrate.run(parse(*argv), settings) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("calibrate failed: sqlite:///") and "revision 9999, newer" in last

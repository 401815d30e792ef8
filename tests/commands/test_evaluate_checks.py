"""`evaluate`'s refusals (repeated columns, an unwritable --out, a kind of pair lost) and
its warnings for impostor pairs of one photo and for probes that copy a gallery photo."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from app.commands import evaluate
from app.config import Settings
from app.pipeline.analyzer import FacePipeline

from .conftest import NO_FACE, PEOPLE


@pytest.mark.usefixtures("no_model")
def test_a_repeated_column_in_the_pairs_file_is_refused(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    pairs = tmp_path / "pairs.csv"
    # The last `same` used to win in silence: a genuine pair read as an impostor one.
    pairs.write_text("path_a,path_b,same,same\na.jpg,b.jpg,1,0\nb.jpg,c.jpg,0,1\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--out", tmp_path / "out")
    assert evaluate.run(args, settings) == 1
    err = capsys.readouterr().err
    assert err == (
        f"evaluate failed: {pairs} has the column same 2 times in its header "
        "(columns 3 and 4); keep one\n"
    )


@pytest.mark.usefixtures("no_model")
def test_a_repeated_column_in_the_manifest_is_refused(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("identity,path,identity\namy,a.jpg,raj\namy,b.jpg,raj\n")
    args = parse("evaluate", "--identify", "--manifest", manifest, "--root", tmp_path)
    assert evaluate.run(args, settings) == 1
    assert capsys.readouterr().err == (
        f"evaluate failed: {manifest} has the column identity 2 times in its header "
        "(columns 1 and 3); keep one\n"
    )


@pytest.mark.usefixtures("no_model")
def test_empty_columns_a_spreadsheet_adds_are_still_read(
    parse, settings: Settings, tmp_path: Path
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same,,\na.jpg,b.jpg,1,,\nb.jpg,c.jpg,0,,\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--out", tmp_path / "out")
    # Read and checked, the run goes on to load a model.
    with pytest.raises(AssertionError, match="a model was loaded"):
        evaluate.run(args, settings)


@pytest.fixture
def two_pairs(tmp_path: Path) -> Path:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\na.jpg,b.jpg,1\nb.jpg,c.jpg,0\n")
    return pairs


@pytest.mark.usefixtures("no_model")
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_out_folder_is_refused_before_any_model_loads(
    parse,
    settings: Settings,
    two_pairs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        args = parse("evaluate", "--pairs", two_pairs, "--root", tmp_path, "--out", out)
        assert evaluate.run(args, settings) == 1
    finally:
        out.chmod(0o700)
    assert capsys.readouterr().err == (
        f"evaluate failed: cannot write to the output folder {out}: Permission denied\n"
    )
    assert list(out.iterdir()) == []  # the check left nothing behind


@pytest.mark.usefixtures("no_model")
def test_an_out_folder_under_a_file_is_refused_before_any_model_loads(
    parse,
    settings: Settings,
    two_pairs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = two_pairs / "out"
    args = parse("evaluate", "--pairs", two_pairs, "--root", tmp_path, "--out", out)
    assert evaluate.run(args, settings) == 1
    assert capsys.readouterr().err == (
        f"evaluate failed: cannot write to the output folder {out}: Not a directory\n"
    )


def test_every_impostor_pair_lost_says_which_and_why(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copyfile(shared_faces / NO_FACE, photo_root / "dog.jpg")
    rows = ["amy1.png,amy2.png,1", "howard1.png,howard2.png,1"]
    rows += ["amy1.png,dog.jpg,0", "corrupt.jpg,howard1.png,0", "dog.jpg,empty.jpg,0"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = parse("evaluate", "--pairs", pairs, "--root", photo_root, "--out", out)
    assert evaluate.run(args, settings, pipeline) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (message,) = [line for line in err.splitlines() if line.startswith("evaluate failed")]
    assert message.startswith(
        "evaluate failed: no impostor (same=0) pair left to score, and the metrics need both "
        "kinds: all 3 were left out, 1 for an image without a face and 2 for an unreadable "
        f"image. No face in: {photo_root / 'dog.jpg'}; unreadable: {photo_root / 'corrupt.jpg'} ("
    )
    assert message.endswith(f"{photo_root / 'empty.jpg'} (empty file)")
    assert list(out.iterdir()) == []


def test_impostor_pairs_of_one_photo_are_warned_about(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A copy under another name: the same bytes, labelled as another person.
    shutil.copyfile(photo_root / "howard1.png", photo_root / "leonard1.png")
    rows = ["amy1.png,amy2.png,1", "howard1.png,howard2.png,1", "amy1.png,howard1.png,0"]
    rows += ["howard1.png,leonard1.png,0"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = parse("evaluate", "--pairs", pairs, "--root", photo_root, "--out", out)
    assert evaluate.run(args, settings, pipeline) == 0

    warning = (
        "1 impostor pair(s) (same=0) are byte-identical copies of one photo (one sha256): "
        f"{photo_root / 'howard1.png'} = {photo_root / 'leonard1.png'}. They score about 1.0 "
        "and pass any threshold, which raises the FAR: one photo is not two people, remove "
        "those rows."
    )
    report = json.loads((out / "verification.json").read_text())
    assert report["warnings"] == [warning]
    assert f"warning: {warning}\n" in capsys.readouterr().err

    # Without such a pair, no warning.
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows[:3]) + "\n")
    assert evaluate.run(args, settings, pipeline) == 0
    assert json.loads((out / "verification.json").read_text())["warnings"] == []
    assert "warning:" not in capsys.readouterr().err


def test_probes_that_copy_a_gallery_photo_are_warned_about(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # amy1.png is enrolled (first by path); amy9.png, the same bytes, is one of her probes.
    shutil.copyfile(photo_root / "amy1.png", photo_root / "amy9.png")
    rows = [f"{p}{n}.png,{p}" for p in PEOPLE for n in (1, 2, 3)]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\n" + "\n".join([*rows, "amy9.png,amy"]) + "\n")
    out = tmp_path / "out"
    argv = ("--manifest", manifest, "--root", photo_root, "--out", out)
    args = parse("evaluate", "--identify", *argv, "--stranger-fraction", "0")
    assert evaluate.run(args, settings, pipeline) == 0

    warning = (
        "1 probe photo(s) are byte-identical copies of a gallery photo (one sha256): "
        f"{photo_root / 'amy9.png'} = {photo_root / 'amy1.png'}. A copy scores about 1.0 "
        "against the photo enrolled: under the same identity it inflates rank-1 and DIR, "
        "under another it is a labelling mistake. Keep one copy of each photo."
    )
    report = json.loads((out / "identification.json").read_text())
    assert report["known_probes"] == 7 and report["warnings"] == [warning]
    assert f"warning: {warning}\n" in capsys.readouterr().err

    # Without the copy, no warning.
    manifest.write_text("path,identity\n" + "\n".join(rows) + "\n")
    assert evaluate.run(args, settings, pipeline) == 0
    report = json.loads((out / "identification.json").read_text())
    assert report["known_probes"] == 6 and report["warnings"] == []
    assert "warning:" not in capsys.readouterr().err

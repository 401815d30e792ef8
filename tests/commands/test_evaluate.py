"""`python -m app evaluate` on a small real subset: verification and identification reports."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from app.commands import evaluate
from app.config import Settings
from app.pipeline.analyzer import FacePipeline

from .conftest import NO_FACE, PEOPLE, TIGHT_CROP, in_subset

Parse = Callable[..., object]


@pytest.fixture
def subset_with_repeats(subset_pairs: Path, tmp_path: Path) -> Path:
    """The subset's 78 pairs (lines 2-79), then line 2 again (line 80), line 3 reversed
    (line 81) and TIGHT_CROP paired with itself (line 82)."""
    with subset_pairs.open(newline="") as handle:
        rows = list(csv.reader(handle))
    path_a, path_b, same = rows[2]
    repeats = [rows[1], [path_b, path_a, same], [TIGHT_CROP, TIGHT_CROP, "1"]]
    path = tmp_path / "repeats.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows + repeats)
    return path


def test_verification_report_on_real_pairs(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    subset_with_repeats: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = parse(
        "evaluate",
        "--pairs",
        subset_with_repeats,
        "--root",
        shared_faces,
        "--out",
        out,
        "--threshold",
        "0.3",
    )
    assert evaluate.run(args, settings, pipeline) == 0

    report = json.loads((out / "verification.json").read_text())
    assert report["model_version"] == pipeline.embedder.version
    assert report["precision"] == pipeline.embedder.precision_name
    assert report["accuracy_mean"] > 0.8
    assert report["roc_auc"] > 0.9
    assert 0.0 <= report["eer"] < 0.2
    assert [p["far_target"] for p in report["tar_at_far"]] == [0.01, 0.001]
    assert all(not p["reliable"] and "unreliable" in p["note"] for p in report["tar_at_far"])
    assert (out / "roc.png").read_bytes().startswith(b"\x89PNG")
    # Written through temp files, which mkstemp makes 0600: still as readable as the umask
    # lets any file be.
    umask = os.umask(0)
    os.umask(umask)
    for written in ("roc.png", "verification.json"):
        assert (out / written).stat().st_mode & 0o777 == 0o666 & ~umask

    # The repeated rows and the self-pair are dropped, not scored: the counts below are
    # the subset's own.
    dropped = report["dropped_rows"]
    assert (dropped["rows"], dropped["duplicates"], dropped["self_pairs"]) == (81, 2, 1)
    assert [(r["line"], r["repeats_line"]) for r in dropped["duplicate_rows"]] == [(80, 2), (81, 3)]
    assert dropped["self_pair_rows"] == [{"line": 82, "path": str(shared_faces / TIGHT_CROP)}]

    no_face = report["no_face"]
    assert no_face["images"] == 26
    assert no_face["images_without_face"] == 1
    assert no_face["paths"] == [str(shared_faces / NO_FACE)]
    assert no_face["pairs"] == 78
    assert no_face["impostor_excluded"] == 2
    assert no_face["pairs_excluded"] == no_face["genuine_excluded"] + no_face["impostor_excluded"]
    assert no_face["pairs_excluded"] > 0
    assert report["pairs"] + no_face["pairs_excluded"] == no_face["pairs"]
    assert report["genuine"] + no_face["genuine_excluded"] == 27
    assert "excluded" in no_face["rule"]
    # Every excluded pair counts as wrong, so the stricter figure is exactly this much lower.
    scored, total = report["pairs"], no_face["pairs"]
    assert report["accuracy_counting_failures_as_errors"] == pytest.approx(
        report["accuracy_at_best_threshold"] * scored / total
    )
    rates = report["at_threshold"][0]
    assert rates["threshold"] == 0.3 and 0.0 <= rates["far"] <= 0.1

    printed = capsys.readouterr().out
    assert "accuracy (10-fold)" in printed and "pairs excluded" in printed
    assert (
        "dropped 2 duplicate row(s) (line 80 repeats 2, line 81 repeats 3) and 1 self-pair(s) "
        f"(line 82: {shared_faces / TIGHT_CROP}) of 81 rows"
    ) in printed


def test_identification_on_a_folder_per_subject(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "people"
    for photo in sorted((shared_faces / "faceapi_js").glob("*/*.png")):
        if in_subset(photo.relative_to(shared_faces).as_posix()):
            (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
            (root / photo.parent.name / photo.name).symlink_to(photo)
    (root / "amy" / "dog.jpg").symlink_to(shared_faces / NO_FACE)
    out = tmp_path / "out"
    args = parse("evaluate", "--identify", "--root", root, "--out", out, "--threshold", "0.3")
    assert evaluate.run(args, settings, pipeline) == 0

    report = json.loads((out / "identification.json").read_text())
    # 8 people x 3 photos, bernadette with a 4th, and a dog among amy's; 2 of 8 held out.
    assert report["no_face"]["images"] == 26 and report["no_face"]["images_without_face"] == 1
    assert len(report["held_out"]) == 2 and report["too_few_photos"] == []
    assert report["subjects"] == report["gallery_faces"] == 6
    # One gallery photo per kept person: 5 x 2 probes, plus bernadette's 3.
    assert report["held_out"] and "bernadette" not in report["held_out"]
    assert report["known_probes"] == 13
    assert report["stranger_probes"] == 6
    assert report["rank_1"] > 0.8 and report["rank_5"] >= report["rank_1"]
    open_set = report["open_set"]
    assert open_set["strangers"] == 6 and open_set["known"] == 13
    assert open_set["below_resolution"] and open_set["far_actual"] == 0.0
    assert 0.0 <= open_set["dir"] <= report["rank_1"]
    # FAR = 1e-2 needs 1,000 strangers to be measured; 6 make the DIR unreliable.
    assert open_set["reliable"] is False
    assert "Only 6 strangers: FAR=0.01 needs at least 1000" in open_set["note"]
    assert report["at_threshold"][0]["strangers"] == 6
    printed = capsys.readouterr().out
    assert "reliable: False" in printed and open_set["note"] in printed


def test_needs_exactly_one_mode(parse, settings: Settings, tmp_path: Path) -> None:
    args = parse("evaluate", "--root", tmp_path)
    assert evaluate.run(args, settings) == 2


def test_a_missing_image_is_a_clean_error(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\ngone.jpg,gone2.jpg,1\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--out", tmp_path / "out")
    assert evaluate.run(args, settings) == 1
    err = capsys.readouterr().err
    assert f"2 photo(s) named in {pairs} are missing or not files" in err
    assert f"{tmp_path / 'gone.jpg'}, {tmp_path / 'gone2.jpg'}" in err


def test_every_missing_image_is_listed_before_any_embedding(
    parse,
    settings: Settings,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    # A real photo first: the run used to embed it, then stop at deepface/nope.jpg.
    real = "deepface/img1.jpg"
    rows = [f"{real},deepface/nope.jpg,1", f"{real},deepface,0"]  # a folder is not a photo
    rows += [f"{real},gone/{i}.jpg,0" for i in range(11)]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    args = parse("evaluate", "--pairs", pairs, "--root", shared_faces, "--out", tmp_path / "out")
    assert evaluate.run(args, settings) == 1
    err = capsys.readouterr().err
    assert err.count("evaluate failed") == 1
    assert f"13 photo(s) named in {pairs} are missing or not files: " in err
    assert f"{shared_faces / 'deepface/nope.jpg'}, {shared_faces / 'deepface'}, " in err
    assert str(shared_faces / "gone/7.jpg") in err and "gone/8.jpg" not in err
    assert err.rstrip().endswith(", and 3 more")
    assert str(shared_faces / real) + "," not in err


def test_a_missing_manifest_photo_is_refused_before_any_embedding(
    parse,
    settings: Settings,
    shared_faces: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\ndeepface/img1.jpg,a\ndeepface/nope.jpg,a\n")
    args = parse("evaluate", "--identify", "--manifest", manifest, "--root", shared_faces)
    assert evaluate.run(args, settings) == 1
    err = capsys.readouterr().err
    assert f"1 photo(s) named in {manifest} are missing or not files: " in err
    assert str(shared_faces / "deepface/nope.jpg") in err


def test_a_contradictory_pairs_file_is_refused_naming_both_lines(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\na.jpg,b.jpg,1\nb.jpg,a.jpg,0\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path)
    assert evaluate.run(args, settings) == 1
    assert f"{pairs}:3: " in (err := capsys.readouterr().err) and "on line 2" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--folds", "1"], "argument --folds: must be at least 2, got 1"),
        (["--folds", "ten"], "argument --folds: invalid int value: 'ten'"),
        (["--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["--far", "1.5"], "argument --far: must lie in [1e-09, 1), got 1.5"),
        (["--far", "0"], "argument --far: must lie in [1e-09, 1), got 0"),
        (["--far", "nan"], "argument --far: must lie in [1e-09, 1), got nan"),
        # 10 / 1e-320 overflowed after the embedding; below 1e-9 nothing can measure it.
        (["--far", "1e-320"], "argument --far: must lie in [1e-09, 1), got 1e-320"),
        (["--far", "9e-10"], "argument --far: must lie in [1e-09, 1), got 9e-10"),
        (["--stranger-fraction", "1"], "argument --stranger-fraction: must lie in [0, 1), got 1"),
        (["--stranger-fraction", "-0.1"], "must lie in [0, 1), got -0.1"),
        (["--gallery-per-subject", "0"], "argument --gallery-per-subject: must be at least 1"),
        (["--threshold", "inf"], "argument --threshold: must be a finite number, got inf"),
    ],
)
def test_bad_values_are_argparse_errors(
    parse, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("evaluate", "--identify", "--root", tmp_path, *argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_values_inside_their_ranges_parse(parse, tmp_path: Path) -> None:
    args = parse(
        "evaluate", "--identify", "--root", tmp_path, "--far", "1e-9", "--stranger-fraction", "0"
    )
    assert (args.far, args.stranger_fraction, args.folds, args.batch) == (1e-9, 0.0, 10, 32)


def test_bad_arguments_are_refused_before_any_model_loads(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\n")
    cases = [
        (["--pairs", tmp_path / "nope.csv"], "nope.csv does not exist"),
        (["--pairs", tmp_path], f"--pairs {tmp_path} is not a file"),
        (["--identify", "--manifest", tmp_path], f"--manifest {tmp_path} is not a file"),
        (["--pairs", pairs, "--manifest", manifest], "--manifest lists photos for --identify"),
        (["--pairs", pairs, "--out", pairs], f"--out {pairs} is not a folder"),
    ]
    for argv, message in cases:
        assert evaluate.run(parse("evaluate", "--root", tmp_path, *argv), settings) == 2
        assert message in capsys.readouterr().err
    not_a_folder = parse("evaluate", "--pairs", pairs, "--root", pairs)
    assert evaluate.run(not_a_folder, settings) == 2
    assert f"--root {pairs} is not a folder" in capsys.readouterr().err


# Three photos each of three people (150 px crops, fast to embed), copied as files.
def test_unreadable_images_are_left_out_and_listed_not_fatal(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [f"{p}{a}.png,{p}{b}.png,1" for p in PEOPLE for a, b in ((1, 2), (2, 3))]
    rows += [f"{a}{n}.png,{b}{n}.png,0" for n in (1, 2) for a, b in pairwise(PEOPLE)]
    rows += ["amy1.png,corrupt.jpg,1", "empty.jpg,howard1.png,0", "corrupt.jpg,empty.jpg,0"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = parse("evaluate", "--pairs", pairs, "--root", photo_root, "--out", out, "--folds", "2")
    assert evaluate.run(args, settings, pipeline) == 0

    report = json.loads((out / "verification.json").read_text())
    unreadable = report["unreadable"]
    assert unreadable["images"] == 2 and unreadable["pairs_excluded"] == 3
    assert unreadable["paths"] == [
        {"path": str(photo_root / "corrupt.jpg"), "reason": unreadable["paths"][0]["reason"]},
        {"path": str(photo_root / "empty.jpg"), "reason": "empty file"},
    ]
    assert "cannot be read or decoded" in unreadable["rule"]
    no_face = report["no_face"]
    # Counted as unreadable, not as photos without a face; their pairs are excluded alike.
    assert (no_face["images"], no_face["images_without_face"], no_face["paths"]) == (11, 0, [])
    assert (no_face["pairs"], no_face["pairs_excluded"]) == (13, 3)
    assert (no_face["genuine_excluded"], no_face["impostor_excluded"]) == (1, 2)
    assert (report["pairs"], report["genuine"], report["impostor"]) == (10, 6, 4)
    assert (out / "roc.png").is_file()
    printed = capsys.readouterr().out
    assert "no face in 0 of 11 images, 2 unreadable; 3 of 13 pairs excluded" in printed
    assert f"unreadable, left out: {photo_root / 'corrupt.jpg'} (" in printed
    assert f"{photo_root / 'empty.jpg'} (empty file)" in printed


def test_identification_leaves_unreadable_photos_out(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = tmp_path / "manifest.csv"
    rows = [f"{p}{n}.png,{p}" for p in PEOPLE for n in (1, 2, 3)]
    manifest.write_text("path,identity\n" + "\n".join([*rows, "empty.jpg,amy"]) + "\n")
    out = tmp_path / "out"
    argv = ("--manifest", manifest, "--root", photo_root, "--out", out)
    args = parse("evaluate", "--identify", *argv, "--stranger-fraction", "0")
    assert evaluate.run(args, settings, pipeline) == 0

    report = json.loads((out / "identification.json").read_text())
    assert report["unreadable"]["images"] == 1
    assert report["unreadable"]["paths"] == [
        {"path": str(photo_root / "empty.jpg"), "reason": "empty file"}
    ]
    assert report["no_face"]["images"] == 10 and report["no_face"]["images_without_face"] == 0
    # amy keeps her 3 real photos: 1 enrolled, 2 probes, like the others.
    assert (report["subjects"], report["known_probes"]) == (3, 6)
    printed = capsys.readouterr().out
    assert "no face in 0 of 10 images, 1 unreadable (left out)" in printed
    assert f"unreadable, left out: {photo_root / 'empty.jpg'} (empty file)" in printed


@pytest.mark.parametrize("same", ["1", "0"])
def test_pairs_of_one_kind_are_refused_before_any_model_loads(
    parse,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
    same: str,
) -> None:
    for name in "abc":
        (tmp_path / f"{name}.jpg").write_bytes(b"never embedded")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"path_a,path_b,same\na.jpg,b.jpg,{same}\nb.jpg,c.jpg,{same}\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--out", tmp_path / "out")
    assert evaluate.run(args, settings) == 1
    assert (
        "evaluate failed: need both genuine (1) and impostor (0) pairs" in capsys.readouterr().err
    )


def test_a_photo_with_two_identities_in_the_manifest_is_refused(
    parse,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\na.jpg,amy\nb.jpg,amy\na.jpg,amy\n./a.jpg,raj\n")
    args = parse("evaluate", "--identify", "--manifest", manifest, "--root", tmp_path)
    assert evaluate.run(args, settings) == 1
    err = capsys.readouterr().err
    assert f"{manifest}:5: {tmp_path / 'a.jpg'} is labelled 'raj' here and 'amy' on line 2" in err


def test_a_manifest_with_a_byte_order_mark_is_read(
    parse, settings: Settings, tmp_path: Path, no_model: None
) -> None:
    for name in ("a.jpg", "b.jpg"):  # two: one to enrol, one to probe
        (tmp_path / name).write_bytes(b"never embedded")
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(b"\xef\xbb\xbfpath,identity\na.jpg,amy\nb.jpg,amy\n")
    args = parse("evaluate", "--identify", "--manifest", manifest, "--root", tmp_path)
    # Read and checked, the run goes on to load a model: the BOM did not hide a column.
    with pytest.raises(AssertionError, match="a model was loaded"):
        evaluate.run(args, settings)


def test_too_few_pairs_to_fold_still_report_everything_else(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # One genuine and one impostor pair scored (amy3's pair is lost to corrupt.jpg): too
    # few for k-fold accuracy, which used to throw the whole report away.
    rows = ["amy1.png,amy2.png,1", "amy1.png,howard1.png,0", "amy3.png,corrupt.jpg,1"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = ("--pairs", pairs, "--root", photo_root, "--out", out, "--threshold", "0.3")
    assert evaluate.run(parse("evaluate", *argv), settings, pipeline) == 0

    report = json.loads((out / "verification.json").read_text())
    assert (report["pairs"], report["genuine"], report["impostor"]) == (2, 1, 1)
    assert (report["folds"], report["accuracy_mean"], report["accuracy_std"]) == (None,) * 3
    assert report["roc_auc"] == 1.0 and report["eer"] == 0.0
    assert report["accuracy_at_best_threshold"] == 1.0
    assert report["accuracy_counting_failures_as_errors"] == pytest.approx(2 / 3)
    assert len(report["tar_at_far"]) == 2 and report["unreadable"]["pairs_excluded"] == 1
    assert report["at_threshold"][0]["threshold"] == 0.3
    assert (out / "roc.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "  accuracy (k-fold): n/a (needs at least 2 genuine and 2 impostor pairs)\n" in printed
    assert "ROC AUC 1.0000" in printed and "at threshold 0.3000: FAR" in printed


def test_an_unwritable_report_is_a_clean_error_after_the_summary(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [f"{p}1.png,{p}2.png,1" for p in PEOPLE] + ["amy1.png,howard1.png,0"]
    rows += ["howard1.png,penny1.png,0"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    (out / "verification.json").mkdir(parents=True)  # in the way of the report
    argv = ("--pairs", pairs, "--root", photo_root, "--out", out, "--folds", "2")
    assert evaluate.run(parse("evaluate", *argv), settings, pipeline) == 1

    captured = capsys.readouterr()
    # The figures were printed before the write failed: minutes of embedding not lost.
    assert "5 scored pairs (3 genuine, 2 impostor)" in captured.out
    assert "accuracy (2-fold): " in captured.out and "wrote" not in captured.out
    # One line (after the progress bar), not a traceback.
    assert captured.err.splitlines()[-1] == (
        f"evaluate failed: cannot write {out / 'verification.json'}: Is a directory"
    )
    assert "Traceback" not in captured.err
    # Nothing half-written: no temp file left. The ROC is written first, so that a report
    # never names a plot that is not there.
    assert sorted(p.name for p in out.iterdir()) == ["roc.png", "verification.json"]
    assert not any((out / "verification.json").iterdir())


def test_a_report_replaces_the_previous_one_whole(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    photo_root: Path,
    tmp_path: Path,
) -> None:
    rows = ["amy1.png,amy2.png,1", "amy1.png,howard1.png,0"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "verification.json").write_text("stale")
    argv = ("--pairs", pairs, "--root", photo_root, "--out", out)
    assert evaluate.run(parse("evaluate", *argv), settings, pipeline) == 0
    assert json.loads((out / "verification.json").read_text())["pairs"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["roc.png", "verification.json"]


def test_identification_without_a_probe_is_refused_before_any_model_loads(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"never embedded")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\na.jpg,amy\nb.jpg,raj\n")
    args = parse("evaluate", "--identify", "--manifest", manifest, "--root", tmp_path)
    assert evaluate.run(args, settings) == 1  # one photo each: all gallery, no probe
    assert f"no identity in {manifest} has more than 1 photo(s)" in capsys.readouterr().err
    manifest.write_text("path,identity\na.jpg,amy\nb.jpg,raj\nc.jpg,raj\n")
    args.gallery_per_subject = 2  # raj's two photos fill his gallery
    assert evaluate.run(args, settings) == 1
    assert f"no identity in {manifest} has more than 2 photo(s)" in capsys.readouterr().err
    args.gallery_per_subject = 1
    # One identity with a photo to probe is enough: the run goes on to the model.
    with pytest.raises(AssertionError, match="a model was loaded"):
        evaluate.run(args, settings)

"""`python -m app evaluate` on a small real subset: verification and identification reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.commands import evaluate
from app.config import Settings
from app.pipeline.analyzer import FacePipeline

from .conftest import NO_FACE, in_subset

Parse = Callable[..., object]


def test_verification_report_on_real_pairs(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    shared_faces: Path,
    subset_pairs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = parse(
        "evaluate",
        "--pairs",
        subset_pairs,
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


def test_identification_on_a_folder_per_subject(
    parse, settings: Settings, pipeline: FacePipeline, shared_faces: Path, tmp_path: Path
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
    assert report["at_threshold"][0]["strangers"] == 6


def test_needs_exactly_one_mode(parse, settings: Settings, tmp_path: Path) -> None:
    args = parse("evaluate", "--root", tmp_path)
    assert evaluate.run(args, settings) == 2


def test_a_missing_image_is_a_clean_error(
    parse,
    settings: Settings,
    pipeline: FacePipeline,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\ngone.jpg,gone2.jpg,1\n")
    args = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--out", tmp_path / "out")
    assert evaluate.run(args, settings, pipeline) == 1
    assert "gone.jpg" in capsys.readouterr().err


def test_bad_arguments_are_refused_before_any_model_loads(
    parse, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\n")
    # No pipeline passed: a model would load (seconds) if these got past the checks.
    folds = parse("evaluate", "--pairs", pairs, "--root", tmp_path, "--folds", "1")
    assert evaluate.run(folds, settings) == 2
    assert "--folds must be at least 2, got 1" in capsys.readouterr().err
    missing = parse("evaluate", "--pairs", tmp_path / "nope.csv", "--root", tmp_path)
    assert evaluate.run(missing, settings) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err

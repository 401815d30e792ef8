"""Photos read for evaluate and calibrate: only regular files, none over the upload limit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.commands import evaluate
from app.commands.file_embeddings import embed_readable_files
from app.config import Settings
from app.pipeline.analyzer import FacePipeline
from tests.commands.test_import_files import writers_for

PHOTOS = [f"faceapi_js/{person}/{person}{n}.png" for person in ("amy", "howard") for n in (1, 2)]
FIFO_REASON = "It is a FIFO (named pipe), not a regular file; it was not read."


def too_large(limit: int) -> str:
    return (
        f"The file is larger than {limit} bytes (FACE_MAX_UPLOAD_BYTES), the most the service "
        "accepts; it was not decoded."
    )


def copy_photos(shared_faces: Path, root: Path) -> list[Path]:
    root.mkdir()
    copies = []
    for photo in PHOTOS:
        copy = root / Path(photo).name
        copy.write_bytes((shared_faces / photo).read_bytes())
        copies.append(copy)
    return copies


def test_a_fifo_and_a_file_over_the_limit_are_unreadable_not_read(
    pipeline: FacePipeline, shared_faces: Path, tmp_path: Path
) -> None:
    photo = copy_photos(shared_faces, tmp_path / "photos")[0]
    limit = photo.stat().st_size
    big = tmp_path / "big.png"
    big.write_bytes(photo.read_bytes())
    os.truncate(big, limit + 1)  # the photo and a zero byte: it decodes, but is too large
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)

    with writers_for([fifo]):
        embedded = embed_readable_files(
            pipeline,
            [photo, big, fifo],
            Settings().max_image_pixels,
            progress=False,
            max_bytes=limit,
        )
    assert embedded.vectors[photo] is not None
    assert embedded.vectors[big] is None and embedded.vectors[fifo] is None
    assert embedded.unreadable == {big: too_large(limit), fifo: FIFO_REASON}


def test_evaluate_reads_up_to_face_max_upload_bytes_and_lists_a_larger_photo(
    parse,
    pipeline: FacePipeline,
    shared_faces: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    amy1, amy2, howard1, howard2 = copy_photos(shared_faces, tmp_path / "photos")
    limit = max(path.stat().st_size for path in (amy1, amy2, howard1, howard2))
    big = amy1.with_name("big.png")
    big.write_bytes(amy1.read_bytes())
    os.truncate(big, limit + 1)
    pairs = tmp_path / "pairs.csv"
    rows = ["amy1.png,amy2.png,1", "howard1.png,howard2.png,1", "amy1.png,howard1.png,0"]
    rows += ["amy2.png,howard2.png,0", "big.png,amy2.png,1"]
    pairs.write_text("path_a,path_b,same\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("FACE_MAX_UPLOAD_BYTES", str(limit))
    settings = Settings(data_dir=tmp_path / "data", embedder="arcface-mbf", device="cpu")
    out = tmp_path / "out"
    args = parse("evaluate", "--pairs", pairs, "--root", amy1.parent, "--out", out, "--folds", "2")
    assert evaluate.run(args, settings, pipeline) == 0

    unreadable = json.loads((out / "verification.json").read_text())["unreadable"]
    assert (unreadable["images"], unreadable["pairs_excluded"]) == (1, 1)
    assert unreadable["paths"] == [{"path": str(big), "reason": too_large(limit)}]
    printed = capsys.readouterr().out
    assert f"unreadable, left out: {big} ({too_large(limit)})" in printed

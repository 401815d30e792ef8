"""A small real subset of the shared pairs, and a pipeline over the session's models."""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from app.commands import calibrate, evaluate
from app.commands.file_embeddings import embed_files
from app.config import Settings
from app.evaluation.pair_scores import Embeddings
from app.pipeline.analyzer import FacePipeline
from app.services.runtime import quality_limits

# face-api.js crops are 150 px, so they embed fast: photos 1-3 of its 8 people, plus
# bernadette5.png, a face that fills the whole frame (found on the detector's second look).
TIGHT_CROP = "faceapi_js/bernadette/bernadette5.png"
# A real photo without a face, added to the subset as impostor pairs.
NO_FACE = "dlib/dog.jpg"
NO_FACE_PARTNERS = ("faceapi_js/amy/amy1.png", "faceapi_js/bernadette/bernadette1.png")


def in_subset(path: str) -> bool:
    return (
        path == TIGHT_CROP or re.fullmatch(r"faceapi_js/[a-z]+/[a-z]+[123]\.png", path) is not None
    )


@pytest.fixture(scope="session")
def subset_pairs(
    write_pairs_subset: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """78 pairs over 26 photos: 27 genuine and 49 impostor pairs of faces (6 with
    TIGHT_CROP), and 2 impostor pairs with NO_FACE."""
    path = write_pairs_subset(in_subset, tmp_path_factory.mktemp("pairs") / "subset.csv")
    with path.open("a", newline="") as handle:
        csv.writer(handle).writerows([NO_FACE, partner, "0"] for partner in NO_FACE_PARTNERS)
    return path


@pytest.fixture(scope="session")
def pipeline(models) -> FacePipeline:  # type: ignore[no-untyped-def]
    return FacePipeline(models.detector, models.embedder, quality_limits(Settings()))


@pytest.fixture(scope="session")
def subset_embeddings(pipeline: FacePipeline, shared_faces: Path, subset_pairs: Path) -> Embeddings:
    with subset_pairs.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [shared_faces / r[column] for r in rows for column in ("path_a", "path_b")]
    settings = Settings()
    return embed_files(
        pipeline,
        paths,
        settings.max_image_pixels,
        progress=False,
        max_bytes=settings.max_upload_bytes,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="arcface-mbf", device="cpu")


@pytest.fixture
def parse() -> Callable[..., argparse.Namespace]:
    """argv -> Namespace, through the same register() calls app/cli.py makes."""
    parser = argparse.ArgumentParser(prog="python -m app")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate.register(commands)
    calibrate.register(commands)

    def parse_args(*argv: object) -> argparse.Namespace:
        return parser.parse_args([str(arg) for arg in argv])

    return parse_args


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the command gets as far as loading a model."""
    from app.commands import file_embeddings

    def load_pipeline(*_: object) -> FacePipeline:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(file_embeddings, "load_pipeline", load_pipeline)


PEOPLE = ("amy", "howard", "penny")


@pytest.fixture
def photo_root(shared_faces: Path, tmp_path: Path) -> Path:
    """PEOPLE's photos 1-3 as <person><n>.png, a corrupt corrupt.jpg and a zero-byte
    empty.jpg, all under one folder."""
    root = tmp_path / "photos"
    root.mkdir()
    for person in PEOPLE:
        for n in (1, 2, 3):
            name = f"{person}{n}.png"
            (root / name).write_bytes((shared_faces / "faceapi_js" / person / name).read_bytes())
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.jpg").write_bytes(b"")
    return root

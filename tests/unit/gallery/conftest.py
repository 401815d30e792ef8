"""Fixtures for gallery tests: a migrated SQLite file per test and helpers to fill it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import repository
from app.gallery.db import make_engine, make_session_factory, migrate
from app.gallery.orm import Face

MODEL = "arcface-mbf@9cc6e4a75f0e"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'faces.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def model() -> str:
    return MODEL


@pytest.fixture
def unit_vector() -> Callable[[], np.ndarray]:
    """A source of random L2-normalised 512-d float32 vectors."""
    rng = np.random.default_rng(1234)

    def make() -> np.ndarray:
        v = rng.standard_normal(512).astype(np.float32)
        return v / np.linalg.norm(v)

    return make


@pytest.fixture
def enrol(unit_vector: Callable[[], np.ndarray]) -> Callable[..., Face]:
    """Adds a face with plausible detection data and the given (or a random) vector."""

    def add(
        s: Session,
        subject_id: str,
        vector: np.ndarray | None = None,
        *,
        sha: str = "0" * 64,
        crop: bytes | None = b"png",
        model: str = MODEL,
    ) -> Face:
        return repository.add_face(
            s,
            subject_id,
            box=[1.0, 2.0, 3.0, 4.0],
            landmarks=[[float(i), float(i + 1)] for i in range(5)],
            quality={"blur": 120.5, "probability": 0.99},
            image_sha256=sha,
            crop=crop,
            crop_landmarks=[[float(i), 2.0] for i in range(5)] if crop else None,
            model=model,
            vector=unit_vector() if vector is None else vector,
        )

    return add

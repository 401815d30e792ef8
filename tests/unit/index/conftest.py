"""Fixtures for index tests: random unit vectors and a migrated SQLite gallery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.db import make_engine, make_session_factory, migrate

DIM = 512
UnitVectors = Callable[[int], np.ndarray]


@pytest.fixture
def unit_vectors() -> UnitVectors:
    """Returns (n, 512) random L2-normalised float32 rows, different on every call."""
    rng = np.random.default_rng(42)

    def make(n: int) -> np.ndarray:
        v = rng.standard_normal((n, DIM)).astype(np.float32)
        unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return unit

    return make


@pytest.fixture
def session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'faces.db'}")
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()

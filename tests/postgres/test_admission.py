"""Admitting a fine-tuning job on PostgreSQL: the same answers as reading every face."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings

# Collected again here, where `settings` (and so `sessions`) names a PostgreSQL database.
from tests.unit.training.test_admission import (  # noqa: F401
    test_the_fewest_faces_that_can_train_are_admitted_and_one_fewer_is_not,
    test_the_gallery_check_decides_as_reading_every_face_did,
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db_url, embedder="arcface-mbf")

"""Calibrations on PostgreSQL: service processes sharing the database serve one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.test_calibration_endpoint import check_processes_share_one_calibration


def test_processes_sharing_a_database_serve_one_calibration(
    db_url: str, tmp_path: Path, models: Any, package_images: Path
) -> None:
    check_processes_share_one_calibration(db_url, tmp_path, models, package_images)

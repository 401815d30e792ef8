"""`python -m app serve` starts the detection process before its imports; load_models
takes it over only if it fits. No process is spawned here: launch() is recorded instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.config import Settings
from app.pipeline.detect_process import DetectionProcess
from app.services import early_start
from app.services.loaded_models import detection_process


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[DetectionProcess]]:
    """The processes launch()ed; FACE_* from the environment cleared, no GPU driver."""
    started: list[DetectionProcess] = []
    monkeypatch.setattr(DetectionProcess, "launch", lambda self: started.append(self))
    monkeypatch.setattr(early_start, "NVIDIA_CONTROL_DEVICE", tmp_path / "no-nvidiactl")
    monkeypatch.setattr(early_start, "_early", None)
    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FACE_DEVICE", "auto")
    yield started
    early_start.take_early(None)


def test_load_models_takes_over_the_early_process(launched: list[DetectionProcess]) -> None:
    early_start.start_detection_early()
    [early] = launched
    assert detection_process(Settings(), torch.device("cpu")) is early
    assert early_start.take_early(early.args) is None  # handed over once


def test_an_early_process_that_does_not_fit_is_closed(
    monkeypatch: pytest.MonkeyPatch, launched: list[DetectionProcess]
) -> None:
    early_start.start_detection_early()
    [early] = launched
    closed: list[DetectionProcess] = []
    monkeypatch.setattr(DetectionProcess, "close", lambda self: closed.append(self))
    other = Settings(min_face_size=64)
    process = detection_process(other, torch.device("cpu"))
    assert closed == [early]
    assert process is not None and process is not early
    assert process.args == early_start.detection_args(other)


def test_a_gpu_service_closes_the_early_process(
    monkeypatch: pytest.MonkeyPatch, launched: list[DetectionProcess]
) -> None:
    early_start.start_detection_early()
    closed: list[DetectionProcess] = []
    monkeypatch.setattr(DetectionProcess, "close", lambda self: closed.append(self))
    assert detection_process(Settings(), torch.device("cuda")) is None
    assert closed == launched


@pytest.mark.parametrize(
    ("env", "driver"),
    [
        ({"FACE_DETECTION_PROCESS": "false"}, False),
        ({"FACE_DEVICE": "cuda"}, False),
        ({}, True),  # auto, with an NVIDIA driver loaded: probably a GPU
        ({"FACE_MIN_FACE_SIZE": "not a number"}, False),  # left to the command line to report
    ],
)
def test_no_early_start_where_the_service_may_not_want_one(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    launched: list[DetectionProcess],
    env: dict[str, str],
    driver: bool,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if driver:
        (tmp_path / "no-nvidiactl").touch()
    early_start.start_detection_early()
    assert launched == []


def test_forced_cpu_starts_early_even_beside_a_gpu_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, launched: list[DetectionProcess]
) -> None:
    (tmp_path / "no-nvidiactl").touch()
    monkeypatch.setenv("FACE_DEVICE", "cpu")
    early_start.start_detection_early()
    assert len(launched) == 1

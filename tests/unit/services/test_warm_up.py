"""The service meets the GPU's padded batch sizes before serving (loaded_models.warm_up)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
import torch

from app.pipeline.detect import FaceDetector
from app.services.loaded_models import warm_up


def test_warm_up_runs_both_networks_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, models: Any
) -> None:
    monkeypatch.setattr("app.pipeline.embedders.base.GPU_LARGEST_BATCH", 32)
    monkeypatch.setattr(models.embedder, "pad_batches", True)
    padded = replace(models, detector=FaceDetector(torch.device("cpu"), pad_batches=True))
    with caplog.at_level(logging.INFO, logger="app.services.loaded_models"):
        warm_up(padded)
    assert "warmed up 2 embedder and 12 MTCNN batch sizes" in caplog.text


def test_nothing_to_warm_up_on_the_cpu(caplog: pytest.LogCaptureFixture, models: Any) -> None:
    with caplog.at_level(logging.INFO, logger="app.services.loaded_models"):
        warm_up(models)
    assert "warmed up" not in caplog.text

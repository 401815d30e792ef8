"""The service's runtime and its detection process: a model swap does not wait on the
process, and a start-up that fails does not leave it running."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.config import Settings
from app.errors import ModelError
from app.pipeline.detect import FaceDetector
from app.pipeline.detect_process import DetectionProcess
from app.services import runtime
from app.services.loaded_models import Models
from tests.api.test_calibration_endpoint import count_builds, want_version


class BrokenChild:
    """A detection process that cannot start (an out-of-memory kill just now, say)."""

    def __init__(self) -> None:
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        raise ModelError("the face detection process exited while starting")


def test_a_model_swap_does_not_wait_on_the_detection_process(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a swap waited for the child (behind a running batch, or its restart), and
    one that failed to restart just then failed the swap for good."""
    from app.services import promotion

    client = make_client(finetune_poll_interval_s=3600)
    state = client.app.state.face
    promoted = SimpleNamespace(id=state.runtime.model_version + "-tuned", activated_at=None)
    want_version(monkeypatch, state, promoted, state.runtime.pipeline.embedder)
    builds = count_builds(monkeypatch, state)
    child = BrokenChild()
    monkeypatch.setattr(state.runtime.pipeline.detector, "process", child)
    promotion.ModelWatcher(state).tick()
    assert builds == [1] and child.starts == 0


def test_a_failed_start_closes_the_detection_process(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = DetectionProcess("cpu", 1280, 40, torchscript=False, threads=1)
    detector = FaceDetector(torch.device("cpu"), process=process)
    monkeypatch.setattr(runtime, "load_models", lambda *a, **k: Models(detector, models.embedder))

    def broken(*args: Any) -> Any:
        raise ModelError("the index cannot be read")

    monkeypatch.setattr(runtime, "_runtime", broken)
    with pytest.raises(ModelError):
        runtime.build_runtime(Settings(), sessions=None, models=None)  # type: ignore[arg-type]
    assert process._closed

"""The service's runtime and its detection process: a model swap does not wait on the
process, and a start-up that fails does not leave it running."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.config import REPO_MODELS_DIR, Settings
from app.errors import ModelError
from app.pipeline.detect import FaceDetector
from app.pipeline.detect_process import DetectionProcess
from app.pipeline.embedders import create_embedder
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


def test_a_failed_model_load_closes_the_detection_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A review: the child is launched first, so weights that fail to load left it running
    beside a service that only reports the error."""
    from app.services import loaded_models

    process = DetectionProcess("cpu", 1280, 40, torchscript=False, threads=1)
    monkeypatch.setattr(process, "launch", lambda: None)  # not spawned: closed all the same
    monkeypatch.setattr(loaded_models, "detection_process", lambda *a: process)

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("weights for arcface-mbf not found")

    monkeypatch.setattr(loaded_models, "create_embedder", missing)
    with pytest.raises(ModelError):
        loaded_models.load_models(Settings(device="cpu"), serving=True)
    assert process._closed


def test_the_embedder_that_serves_is_warmed_up_after_a_swap(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU warm-up ran in load_models, on the packaged embedder: one that a fine-tuned
    model replaced at once, and a model swapped in later, served their first batch sizes
    cold (about 1 s each on an H200)."""
    from app.services import promotion

    client = make_client(finetune_poll_interval_s=3600)
    state = client.app.state.face
    promoted = SimpleNamespace(id=state.runtime.model_version + "-tuned", activated_at=None)
    swapped_in = create_embedder("arcface-mbf", REPO_MODELS_DIR, torch.device("cpu"))
    want_version(monkeypatch, state, promoted, swapped_in)
    warmed: list[tuple[Any, bool]] = []
    monkeypatch.setattr(
        runtime, "warm_up", lambda models, detector: warmed.append((models.embedder, detector))
    )
    promotion.ModelWatcher(state).tick()
    assert warmed == [(swapped_in, False)]  # the new embedder; MTCNN serves on, warm

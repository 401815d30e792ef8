"""GPU passes run on one thread per CUDA device; CPU calls run where they are made.

No CUDA is needed: the functions handed over are plain Python, and a torch.device("cuda")
object exists without a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from app.pipeline.detect import FaceDetector
from app.pipeline.device_thread import on_device_thread
from app.pipeline.types import ImageArray
from tests.unit.pipeline.conftest import call_together


def current() -> threading.Thread:
    return threading.current_thread()


def test_cpu_calls_run_on_the_calling_thread() -> None:
    assert on_device_thread(torch.device("cpu"), current) is threading.current_thread()


def test_every_caller_of_a_cuda_device_shares_its_one_thread() -> None:
    device = torch.device("cuda")
    ran_on = call_together([lambda: on_device_thread(device, current)] * 8)
    assert len(set(ran_on)) == 1
    [thread] = set(ran_on)
    assert thread is not threading.current_thread()
    assert thread.name.startswith("cuda:0")
    assert on_device_thread(torch.device("cuda:0"), current) is thread  # "cuda" is cuda:0
    other = on_device_thread(torch.device("cuda:1"), current)
    assert other is not thread and other.name.startswith("cuda:1")


def test_results_arguments_and_errors_come_back() -> None:
    device = torch.device("cuda:0")
    assert on_device_thread(device, lambda a, b=0: a + b, 2, b=3) == 5

    def fail() -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        on_device_thread(device, fail)
    assert on_device_thread(device, lambda: "still serving") == "still serving"


def test_a_pass_that_calls_another_does_not_deadlock() -> None:
    device = torch.device("cuda:0")

    def outer() -> tuple[threading.Thread, threading.Thread]:
        return current(), on_device_thread(device, current)

    first, nested = on_device_thread(device, outer)
    assert first is nested


def recording(calls: list[str]) -> Callable[..., Any]:
    def record(device: torch.device, fn: Callable[..., Any], *args: Any) -> Any:
        calls.append(str(device))
        return fn(*args)

    return record


def test_embed_and_detect_go_through_the_device_thread(
    monkeypatch: pytest.MonkeyPatch, models: Any, detector: FaceDetector, yaoming: ImageArray
) -> None:
    calls: list[str] = []
    monkeypatch.setattr("app.pipeline.embedders.base.on_device_thread", recording(calls))
    monkeypatch.setattr("app.pipeline.detect.on_device_thread", recording(calls))
    faces = detector.detect(yaoming)
    crop = np.zeros((112, 112, 3), np.uint8)
    vectors = models.embedder.embed([crop, crop])
    assert faces and vectors.shape == (2, 512)
    assert calls == ["cpu", "cpu"]

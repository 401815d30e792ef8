"""Device-dependent defaults: inference threads, torch threads, micro-batch sizes."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.pipeline.batched_pipeline import BatchingPipeline
from app.services.runtime import build_pipeline
from app.services.threads import (
    CPU_BATCH,
    CPU_WORKERS,
    GPU_BATCH,
    GPU_WORKERS,
    batch_max_size,
    inference_workers,
    torch_threads,
)


@pytest.mark.parametrize(
    ("cores", "workers", "serving", "expected"),
    [
        (2, 8, True, 1),  # more workers than cores: one thread each
        (32, 8, True, 4),
        (16, 1, True, 16),  # one worker gets every core
        (2, 8, False, 2),  # commands and fine-tuning use every core
    ],
)
def test_auto_threads(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, serving: bool, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    settings = Settings(inference_workers=workers, torch_threads=0)
    assert torch_threads(settings, serving) == expected


def test_explicit_threads_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    settings = Settings(inference_workers=8, torch_threads=3)
    assert torch_threads(settings, serving=True) == torch_threads(settings, serving=False) == 3


@pytest.mark.parametrize(
    ("device", "cuda", "expected"),
    [
        ("cpu", True, CPU_WORKERS),  # asked for the CPU: micro-batching threads
        ("auto", False, CPU_WORKERS),
        ("auto", True, GPU_WORKERS),  # found on the machine
        ("cuda:1", False, GPU_WORKERS),  # load_models reports the missing GPU, not this
    ],
)
def test_auto_workers_follow_the_device(
    monkeypatch: pytest.MonkeyPatch, device: str, cuda: bool, expected: int
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    settings = Settings(device=device, inference_workers=0, torch_threads=0)
    assert inference_workers(settings) == expected
    assert torch_threads(settings, serving=True) == 16 // expected


def test_explicit_workers_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert inference_workers(Settings(device="cuda", inference_workers=6)) == 6


@pytest.mark.parametrize(
    ("device", "cuda", "expected"), [("cpu", True, CPU_BATCH), ("auto", True, GPU_BATCH)]
)
def test_auto_batch_size_follows_the_device(
    monkeypatch: pytest.MonkeyPatch, device: str, cuda: bool, expected: int
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    assert batch_max_size(Settings(device=device, batch_max_size=0)) == expected
    assert batch_max_size(Settings(device=device, batch_max_size=3)) == 3


def test_the_service_pipeline_batches_by_the_resolved_size(models: Any) -> None:
    pipeline = build_pipeline(Settings(device="cpu", batch_max_size=0), models)
    assert isinstance(pipeline, BatchingPipeline) and pipeline.detect_batcher is not None
    assert pipeline.embed_batcher.max_size == pipeline.detect_batcher.max_size == CPU_BATCH
    pipeline.close()
    single = build_pipeline(Settings(device="cpu", batch_max_size=1), models)
    assert not isinstance(single, BatchingPipeline)

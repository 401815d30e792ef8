"""Torch thread counts: a share of the cores per inference worker when serving."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.services.threads import CPU_WORKERS, GPU_WORKERS, inference_workers, torch_threads


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

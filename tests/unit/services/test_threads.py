"""Torch thread counts: a share of the cores per inference worker when serving."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.services.runtime import torch_threads


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

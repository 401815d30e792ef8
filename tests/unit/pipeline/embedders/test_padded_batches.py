"""embed() with the GPU's padded batch sizes, checked on the CPU (shape_buckets.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.pipeline.embedders import Embedder
from tests.unit.pipeline.embedders.conftest import AlignFaces


def spy_on_batches(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> list[int]:
    """The batch sizes embed() runs its network at, from now on."""
    seen: list[int] = []
    real = embedder.inference_runner()

    def run(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.shape[0])
        return real(batch)

    monkeypatch.setattr(embedder, "inference_runner", lambda: run)
    return seen


def test_padded_batches_give_the_same_embeddings(
    monkeypatch: pytest.MonkeyPatch, arcface: Embedder, align_faces: AlignFaces
) -> None:
    faces = align_faces("players.jpg", arcface.template)
    assert len(faces) >= 10
    faces = (faces * 4)[:40]
    plain = arcface.embed(faces)
    monkeypatch.setattr("app.pipeline.embedders.base.GPU_LARGEST_BATCH", 32)
    monkeypatch.setattr(arcface, "pad_batches", True)
    seen = spy_on_batches(monkeypatch, arcface)
    padded = arcface.embed(faces)
    assert seen == [32, 16]  # 40 faces: a chunk of 32, then 8 padded to 16
    assert padded.shape == plain.shape == (40, 512)
    cosines = np.sum(padded * plain, axis=1)
    assert cosines.min() > 0.999
    seen.clear()
    assert arcface.embed(faces[:3]).shape == (3, 512)
    assert seen == [16]


def test_warm_up_meets_every_padded_size_once(
    monkeypatch: pytest.MonkeyPatch, arcface: Embedder
) -> None:
    seen = spy_on_batches(monkeypatch, arcface)
    assert arcface.warm_up() == []  # on the CPU nothing is padded, so nothing to meet
    assert seen == []
    monkeypatch.setattr("app.pipeline.embedders.base.GPU_LARGEST_BATCH", 64)
    monkeypatch.setattr(arcface, "pad_batches", True)
    assert arcface.warm_up() == [16, 32, 64]
    assert seen == [16, 32, 64]

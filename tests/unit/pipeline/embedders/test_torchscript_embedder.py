"""embed() through a TorchScript copy: same embeddings, rebuilt when the weights change."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch

from app.config import REPO_MODELS_DIR
from app.pipeline.embedders import Embedder, base, create_embedder
from app.pipeline.types import AlignTemplate, ImageArray

AlignFaces = Callable[[str, AlignTemplate], list[ImageArray]]  # the conftest fixture
CPU = torch.device("cpu")


def _is_eager(runner: object) -> bool:
    return isinstance(runner, functools.partial) and runner.func is base._run_eager


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # rows are unit vectors


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_traced_embeddings_match_eager(precision: str, align_faces: AlignFaces) -> None:
    traced = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, precision=precision)
    eager = create_embedder(
        "arcface-mbf", REPO_MODELS_DIR, CPU, precision=precision, torchscript=False
    )
    faces = align_faces("players.jpg", traced.template) + align_faces(
        "yaoming.jpg", traced.template
    )
    assert len(faces) > 5
    assert isinstance(traced._trace(), torch.jit.ScriptModule)
    assert _is_eager(eager.inference_runner())
    # The trace of the bf16 copy against autocast: both bf16, rounded in places apart.
    floor = 0.99999 if precision == "fp32" else 0.9995
    assert _cosines(traced.embed(faces), eager.embed(faces)).min() > floor
    # Batch size is not baked into the trace.
    for n in (1, 2, len(faces)):
        assert traced.embed(faces[:n]).shape == (n, traced.embedding_dim)


def test_changed_weights_rebuild_the_trace(align_faces: AlignFaces) -> None:
    embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    faces = align_faces("yaoming.jpg", embedder.template)
    before = embedder.embed(faces)
    first = embedder.inference_runner()
    assert embedder.inference_runner() is first  # unchanged weights: the same trace
    conv = next(m for m in embedder.module.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(0.5)  # as an optimizer step does, in place
    assert embedder.inference_runner() is not first
    after = embedder.embed(faces)
    assert _cosines(before, after).min() < 0.999  # the new weights are used
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(
            embedder.forward(embedder.preprocess(faces)), dim=1
        ).numpy()
    assert _cosines(after, expected).min() > 0.99999


def test_a_network_that_will_not_trace_runs_eagerly(
    monkeypatch: pytest.MonkeyPatch, arcface: Embedder, align_faces: AlignFaces
) -> None:
    embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    monkeypatch.setattr(base, "trace_module", lambda module, examples: None)
    assert _is_eager(embedder.inference_runner())
    faces = align_faces("yaoming.jpg", embedder.template)
    assert _cosines(embedder.embed(faces), arcface.embed(faces)).min() > 0.99999


def test_a_model_frozen_for_serving_no_longer_walks_its_weights(
    monkeypatch: pytest.MonkeyPatch, align_faces: AlignFaces
) -> None:
    embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    faces = align_faces("yaoming.jpg", embedder.template)
    before = embedder.embed(faces)
    embedder.freeze_for_serving()
    runner = embedder.inference_runner()

    def walked(module: torch.nn.Module) -> None:
        raise AssertionError("the weights were walked after freeze_for_serving")

    monkeypatch.setattr(base, "_weights_version", walked)
    assert embedder.inference_runner() is runner
    assert np.array_equal(embedder.embed(faces), before)


def test_a_new_precision_rebuilds_the_trace(align_faces: AlignFaces) -> None:
    """benchmarks/gpu.py sets `precision` between its figures: its fp32, bf16 and fp16 rows
    all ran the first trace while only the weights keyed it."""
    embedder = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU)
    faces = align_faces("players.jpg", embedder.template)
    fp32 = embedder.embed(faces)
    first = embedder.inference_runner()
    embedder.precision = torch.bfloat16
    assert embedder.inference_runner() is not first
    bf16 = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, precision="bf16").embed(faces)
    np.testing.assert_allclose(embedder.embed(faces), bf16, atol=1e-6)
    assert np.abs(bf16 - fp32).max() > 1e-4  # so the comparison above tells them apart
    embedder.precision = None
    np.testing.assert_allclose(embedder.embed(faces), fp32, atol=1e-6)

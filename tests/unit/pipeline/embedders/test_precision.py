"""Inference precision: which format auto picks, and what bf16 does to real embeddings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from app.config import REPO_MODELS_DIR, Settings
from app.errors import ModelError
from app.evaluation.far_calibration import SCORE_NOISE
from app.pipeline.embedders import Embedder, create_embedder
from app.pipeline.embedders.precision import inference_dtype, native_bf16
from app.pipeline.types import AlignTemplate, ImageArray

AlignFaces = Callable[[str, AlignTemplate], list[ImageArray]]  # the conftest fixture
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def arcface_bf16() -> Embedder:
    return create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, precision="bf16")


@pytest.mark.parametrize(
    ("name", "dtype"), [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_named_precisions(name: str, dtype: torch.dtype | None) -> None:
    assert inference_dtype(name, CPU) == dtype


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ModelError, match="unknown precision 'int4'"):
        inference_dtype("int4", CPU)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_is_bf16_only_on_cpus_that_have_it(
    monkeypatch: pytest.MonkeyPatch, has_bf16: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16(CPU) is has_bf16
    assert inference_dtype("auto", CPU) == (torch.bfloat16 if has_bf16 else None)


def test_auto_is_fp32_when_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert inference_dtype("auto", CPU) is None


def test_settings_reject_an_unknown_precision() -> None:
    with pytest.raises(ValueError, match="embed_precision"):
        Settings(embed_precision="int8")  # type: ignore[arg-type]


def test_embedder_reports_its_precision(arcface: Embedder, arcface_bf16: Embedder) -> None:
    assert (arcface.precision_name, arcface_bf16.precision_name) == ("fp32", "bf16")
    assert arcface.version == arcface_bf16.version  # same weights, same stored vectors


def test_channels_last_changes_nothing(arcface: Embedder, align_faces: AlignFaces) -> None:
    faces = align_faces("players.jpg", arcface.template)[:3]
    batch = arcface.preprocess(faces)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        nhwc = arcface.forward(batch)
        nchw = arcface.forward(batch.contiguous())
    torch.testing.assert_close(nhwc, nchw, atol=1e-5, rtol=1e-4)


def test_bf16_embeddings_stay_close_to_fp32(
    arcface: Embedder, arcface_bf16: Embedder, align_faces: AlignFaces
) -> None:
    faces = align_faces("players.jpg", arcface.template) + align_faces(
        "yaoming.jpg", arcface.template
    )
    exact, fast = arcface.embed(faces), arcface_bf16.embed(faces)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (exact * fast).sum(axis=1).min() > 0.995
    # Scores between faces move by about 0.001 (docs/accuracy.md): far below any margin.
    assert np.abs(exact @ exact.T - fast @ fast.T).max() < 0.02
    # Yao Ming (the last face) is still found among the players, by the same margin.
    scores_exact, scores_fast = exact[:-1] @ exact[-1], fast[:-1] @ fast[-1]
    assert np.argmax(scores_fast) == np.argmax(scores_exact)
    assert scores_fast.max() > 0.4


def test_bf16_score_noise_stays_within_what_calibration_allows_for(
    arcface_bf16: Embedder, align_faces: AlignFaces
) -> None:
    """The same pair scored twice in bf16, from crops a few grey levels apart (as the
    service's detection and the calibration's can give), moves by less than the noise that
    calibrated thresholds keep clear of (far_calibration.SCORE_NOISE)."""
    faces = align_faces("players.jpg", arcface_bf16.template) + align_faces(
        "gdp.jpg", arcface_bf16.template
    )
    rng = np.random.default_rng(0)
    nudged = []
    for face in faces:
        copy = face.astype(np.int16)
        copy.flat[rng.integers(0, copy.size, 20)] += rng.choice([-1, 1], 20).astype(np.int16)
        nudged.append(np.clip(copy, 0, 255).astype(np.uint8))
    before, after = arcface_bf16.embed(faces), arcface_bf16.embed(nudged)
    moved = np.abs(before @ before.T - after @ after.T)
    assert len(faces) >= 10 and 0 < moved.max() < SCORE_NOISE


def test_fp16_runs_on_the_cpu_too(arcface: Embedder, align_faces: AlignFaces) -> None:
    # Meant for GPUs, and slow on most CPUs, but it must still give the same person.
    half = create_embedder("arcface-mbf", REPO_MODELS_DIR, CPU, precision="fp16")
    (face,) = align_faces("yaoming.jpg", arcface.template)
    (exact,), (fast,) = arcface.embed([face]), half.embed([face])
    assert fast.dtype == np.float32 and float(exact @ fast) > 0.999

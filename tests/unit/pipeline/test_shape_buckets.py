"""Padded batch sizes for GPU passes (app/pipeline/shape_buckets.py), checked on the CPU:
the padding must never change a real row's output, and only bucket sizes may run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.pipeline.detect import FaceDetector
from app.pipeline.image_io import decode_image
from app.pipeline.shape_buckets import PaddedBatches, bucket, buckets, pad_rows, run_padded


def test_buckets_are_powers_of_two_from_a_floor() -> None:
    assert [bucket(n, 16) for n in (0, 1, 15, 16, 17, 33, 256, 257)] == [
        16, 16, 16, 16, 32, 64, 256, 512,
    ]  # fmt: skip
    assert [bucket(n, 1) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    assert buckets(16, 512) == [16, 32, 64, 128, 256, 512]
    assert buckets(16, 300) == [16, 32, 64, 128, 256, 512]  # up to the one that holds 300
    assert buckets(1, 8) == [1, 2, 4, 8]


def test_pad_rows_adds_zero_rows_and_keeps_the_memory_format() -> None:
    batch = torch.rand(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    padded = pad_rows(batch, 16)
    assert padded.shape == (16, 3, 8, 8)
    assert torch.equal(padded[:3], batch)
    assert not padded[3:].any()
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert pad_rows(batch, 3) is batch


def test_run_padded_cuts_every_output_back_to_the_real_rows() -> None:
    seen: list[int] = []

    def net(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.shape[0])
        return x * 2, x.sum(dim=1)

    batch = torch.arange(10.0).reshape(5, 2)
    doubled, sums = run_padded(net, batch, 16)
    assert seen == [16]
    assert torch.equal(doubled, batch * 2) and torch.equal(sums, batch.sum(dim=1))
    single = run_padded(lambda x: x + 1, batch, 4)
    assert torch.equal(single, batch + 1)


@pytest.fixture(scope="module")
def padded_detector() -> FaceDetector:
    """MTCNN as it runs on a GPU (padded P/R/O-net batches), here on the CPU."""
    return FaceDetector(torch.device("cpu"), pad_batches=True)


def test_padded_mtcnn_finds_the_same_faces(
    padded_detector: FaceDetector, detector: FaceDetector, package_images: Path
) -> None:
    image = decode_image((package_images / "players.jpg").read_bytes(), 100_000_000)
    seen: list[int] = []
    rnet = padded_detector._mtcnn.rnet
    assert isinstance(rnet, PaddedBatches)
    assert not rnet.training and not rnet.net.training
    hook = rnet.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        padded = padded_detector.detect(image)
    finally:
        hook.remove()
    plain = detector.detect(image)
    assert len(padded) == len(plain) >= 20
    assert seen and all(rows in buckets(16, 512) for rows in seen)
    for a, b in zip(padded, plain, strict=True):
        np.testing.assert_allclose(a.box, b.box, atol=1e-2)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-2)
        assert a.probability == pytest.approx(b.probability, abs=1e-5)


def test_detector_warm_up_meets_every_r_and_o_net_bucket(
    padded_detector: FaceDetector, detector: FaceDetector
) -> None:
    sizes = buckets(16, 512)
    assert padded_detector.warm_up() == [("rnet", n) for n in sizes] + [("onet", n) for n in sizes]
    assert detector.warm_up() == []  # unpadded (the CPU's default): nothing to meet

"""BatchingPipeline: concurrent detections and embeddings equal the unbatched ones."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.pipeline.analyzer import FacePipeline
from app.pipeline.batched_pipeline import BatchingPipeline
from app.pipeline.types import ImageArray, QualityLimits
from tests.unit.pipeline.conftest import call_together

LIMITS = QualityLimits(min_face_size=32, min_probability=0.9, min_blur=25.0)
PHOTOS = ["deepface/img1.jpg", "deepface/img2.jpg", "deepface/img3.jpg", "deepface/img5.jpg"]


@pytest.fixture(scope="module")
def images(shared_faces: Path) -> list[ImageArray]:
    from app.pipeline.image_io import decode_image

    return [decode_image((shared_faces / p).read_bytes(), 100_000_000) for p in PHOTOS]


@pytest.fixture(scope="module")
def aligned(models: Any, images: list[ImageArray]) -> list[ImageArray]:
    pipeline = FacePipeline(models.detector, models.embedder, LIMITS)
    return [pipeline.analyze(image)[0].aligned for image in images]


def test_a_lane_does_not_wait_for_callers_held_in_the_other(
    models: Any, aligned: list[ImageArray]
) -> None:
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=8, max_wait_s=5.0, callers=lambda: 2
    )
    assert pipeline.detect_batcher is not None
    # The other running request sits in the detection lane, so it cannot join this embed.
    pipeline.detect_batcher._running = 1
    start = time.monotonic()
    vectors = pipeline.embed_aligned([aligned[0]])
    assert time.monotonic() - start < 2.5
    np.testing.assert_allclose(vectors, models.embedder.embed([aligned[0]]), atol=1e-5)


def test_concurrent_embeddings_match_unbatched(models: Any, aligned: list[ImageArray]) -> None:
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=16, max_wait_s=0.05, callers=lambda: 8
    )
    crops = [aligned[i % len(aligned)] for i in range(8)]
    expected = models.embedder.embed(crops)
    results = call_together([partial(pipeline.embed_aligned, [c]) for c in crops])
    np.testing.assert_allclose(np.concatenate(results), expected, atol=1e-4)
    assert pipeline.embed_batcher.stats.batches < len(crops)


def test_wrong_crop_fails_only_its_caller(models: Any, aligned: list[ImageArray]) -> None:
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=16, max_wait_s=0.05, callers=lambda: 3
    )
    bad = np.zeros((50, 50, 3), dtype=np.uint8)
    calls = [partial(pipeline.embed_aligned, [c]) for c in (aligned[0], bad, aligned[1])]
    good0, error, good1 = call_together(calls)
    assert isinstance(error, ValueError)
    np.testing.assert_allclose(good0[0], models.embedder.embed([aligned[0]])[0], atol=1e-4)
    np.testing.assert_allclose(good1[0], models.embedder.embed([aligned[1]])[0], atol=1e-4)


def test_batched_detection_matches_the_detector(models: Any, images: list[ImageArray]) -> None:
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=8, max_wait_s=0.05, callers=lambda: 4
    )
    # Equal-size tiles around each face, so the four detections can share one MTCNN pass.
    tiles = [face_tile(image, models.detector.detect(image)[0].box) for image in images]
    batched = call_together([partial(pipeline.detect, t) for t in tiles])
    assert pipeline.detect_batcher is not None
    assert pipeline.detect_batcher.stats.batches < len(tiles)
    for tile, faces in zip(tiles, batched, strict=True):
        alone = models.detector.detect(tile)
        assert len(faces) == len(alone) >= 1
        for got, want in zip(faces, alone, strict=True):
            np.testing.assert_allclose(got.box, want.box, atol=0.5)
            np.testing.assert_allclose(got.landmarks, want.landmarks, atol=0.5)
    full = images[0]
    (got,), (want,) = pipeline.detect(full), models.detector.detect(full)
    np.testing.assert_allclose(got.box, want.box, atol=1e-3)


def face_tile(image: ImageArray, box: tuple[float, float, float, float]) -> ImageArray:
    """A 250 x 250 tile of `image` around a face, resized from a square twice the face."""
    from PIL import Image

    side = 2 * max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    square = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    tile = Image.fromarray(image).crop(square).resize((250, 250), Image.Resampling.BILINEAR)
    return np.asarray(tile, dtype=np.uint8)


def test_batched_detection_takes_the_padded_second_look(models: Any, shared_faces: Path) -> None:
    from app.pipeline.image_io import decode_image

    tight = decode_image((shared_faces / "faceapi_js/howard/howard5.png").read_bytes(), 10**8)
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=4, max_wait_s=0.01, callers=lambda: 2
    )
    batched = call_together([partial(pipeline.detect, tight), partial(pipeline.detect, tight)])
    expected = models.detector.detect(tight)
    assert len(expected) == 1
    for faces in batched:
        assert len(faces) == 1
        np.testing.assert_allclose(faces[0].box, expected[0].box, atol=0.5)


def test_handing_passes_to_one_device_thread_keeps_every_result(
    monkeypatch: pytest.MonkeyPatch, models: Any, images: list[ImageArray]
) -> None:
    """On a GPU every pass runs on the device's one thread (app/pipeline/device_thread.py);
    here the CPU's passes are sent to such a thread, under concurrent micro-batching."""
    import threading

    import torch

    from app.pipeline import device_thread

    reference = FacePipeline(models.detector, models.embedder, LIMITS)
    expected = [reference.embed(reference.analyze(image)[:1]) for image in images]
    ran_on: list[str] = []

    def hand_off(device: torch.device, fn: Any, *args: Any) -> Any:
        def record(*inner: Any) -> Any:
            ran_on.append(threading.current_thread().name)
            return fn(*inner)

        return device_thread.on_device_thread(torch.device("cuda:7"), record, *args)

    monkeypatch.setattr("app.pipeline.embedders.base.on_device_thread", hand_off)
    monkeypatch.setattr("app.pipeline.detect.on_device_thread", hand_off)
    pipeline = BatchingPipeline(
        models.detector, models.embedder, LIMITS, max_size=8, max_wait_s=0.02, callers=lambda: 4
    )

    def analyze_and_embed(image: ImageArray) -> Any:
        return pipeline.embed(pipeline.analyze(image)[:1])

    results = call_together([partial(analyze_and_embed, image) for image in images])
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(ran_on) >= len(images) + 1  # detections, and at least one embedding batch
    assert {name.split("_")[0] for name in ran_on} == {"cuda:7"}

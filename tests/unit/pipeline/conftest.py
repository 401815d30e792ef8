"""One MTCNN detector and the Yao Ming photo for the pipeline tests.

The photo-set fixtures (`shared_faces`, `manifest`, `package_images`) come from
tests/conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from app.pipeline.detect import FaceDetector
from app.pipeline.image_io import decode_image
from app.pipeline.types import DetectedFace, ImageArray

ImageLoader = Callable[[Path], ImageArray]
Detection = tuple[list[DetectedFace], tuple[int, int]]


def call_together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Start every call at once on its own thread; results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture(scope="session")
def load_image() -> ImageLoader:
    return lambda path: decode_image(path.read_bytes(), max_pixels=100_000_000)


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector(torch.device("cpu"))


@pytest.fixture(scope="session")
def yaoming(package_images: Path, load_image: ImageLoader) -> ImageArray:
    return load_image(package_images / "yaoming.jpg")


@pytest.fixture(scope="session")
def yaoming_face(detector: FaceDetector, yaoming: ImageArray) -> DetectedFace:
    faces = detector.detect(yaoming)
    assert len(faces) == 1
    return faces[0]


@pytest.fixture(scope="session")
def detect_shared(
    detector: FaceDetector, shared_faces: Path, load_image: ImageLoader
) -> Callable[[str], Detection]:
    """Faces and (height, width) of a shared photo, detected once per session."""
    cache: dict[str, Detection] = {}

    def detect(name: str) -> Detection:
        if name not in cache:
            image = load_image(shared_faces / name)
            cache[name] = (detector.detect(image), (image.shape[0], image.shape[1]))
        return cache[name]

    return detect

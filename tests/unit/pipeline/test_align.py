"""Tests for landmark alignment: geometry on synthetic dots, and the stored-crop round trip."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from app.pipeline.align import (
    ARCFACE_112,
    CROP_224,
    FACENET_160,
    align_face,
    estimate_transform,
    make_face_crop,
)
from app.pipeline.types import AlignTemplate, DetectedFace, ImageArray

TEMPLATES = [ARCFACE_112, FACENET_160, CROP_224]


def _dots_image(points: np.ndarray, shape: tuple[int, int], sigma: float) -> ImageArray:
    """A black image with a white Gaussian dot on each point."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    canvas = np.zeros(shape)
    for x, y in points:
        canvas += np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    gray = np.clip(canvas * 255, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _dot_centre(image: ImageArray, near: np.ndarray, radius: int = 4) -> np.ndarray:
    """Intensity-weighted centroid of the dot in a window around `near`."""
    x, y = np.rint(near).astype(int)
    window = image[y - radius : y + radius + 1, x - radius : x + radius + 1, 0].astype(float)
    rows, cols = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    total = window.sum()
    assert total > 0, f"no dot near {near}"
    return np.array([x + (cols * window).sum() / total, y + (rows * window).sum() / total])


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: f"size{t.size}")
def test_template_shapes(template: AlignTemplate) -> None:
    assert template.points.shape == (5, 2)
    assert template.points.dtype == np.float32
    assert (template.points > 0).all() and (template.points < template.size).all()


def test_stored_crop_contains_every_embedder_frame() -> None:
    for template in (ARCFACE_112, FACENET_160):
        into_crop = estimate_transform(template.points, CROP_224)
        size = template.size
        corners = into_crop(np.array([[0, 0], [size, 0], [0, size], [size, size]], float))
        assert (corners >= 0).all() and (corners <= CROP_224.size).all(), template.size


@pytest.mark.parametrize("scale", [1.3, 5.0], ids=["direct", "pre-shrunk"])
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: f"size{t.size}")
def test_landmarks_land_on_the_template(template: AlignTemplate, scale: float) -> None:
    # Place the template's own points in a photo, rotated, scaled and shifted.
    placement = SimilarityTransform(  # type: ignore[no-untyped-call]
        scale=scale * 112 / template.size, rotation=np.deg2rad(20), translation=(60, 30)
    )
    landmarks = placement(template.points.astype(float)).astype(np.float32)
    shape = (int(landmarks[:, 1].max()) + 80, int(landmarks[:, 0].max()) + 80)
    photo = _dots_image(landmarks, shape, sigma=1.2 * scale * 112 / template.size)

    transform = estimate_transform(landmarks, template)
    np.testing.assert_allclose(transform(landmarks), template.points, atol=1.0)

    aligned = align_face(photo, landmarks, template)
    assert aligned.shape == (template.size, template.size, 3)
    assert aligned.dtype == np.uint8
    for expected in template.points:
        found = _dot_centre(aligned, expected)
        assert np.abs(found - expected).max() < 0.25, (expected, found)


def test_real_landmarks_fit_the_template_closely(yaoming_face: DetectedFace) -> None:
    transform = estimate_transform(yaoming_face.landmarks, ARCFACE_112)
    residual = np.linalg.norm(transform(yaoming_face.landmarks) - ARCFACE_112.points, axis=1)
    assert residual.max() < 6.0  # a real face is not the template, but it is close


def test_area_outside_the_image_is_black() -> None:
    image = np.full((100, 100, 3), 180, dtype=np.uint8)
    # A face whose template frame hangs off the top-left corner.
    landmarks = ARCFACE_112.points * 0.8 - 20
    aligned = align_face(image, landmarks, ARCFACE_112)
    assert (aligned[0, 0] == 0).all()
    assert (aligned[-1, -1] == 180).all()


def test_face_entirely_outside_gives_a_black_crop() -> None:
    image = np.full((50, 50, 3), 180, dtype=np.uint8)
    aligned = align_face(image, ARCFACE_112.points + 500, ARCFACE_112)
    assert aligned.shape == (112, 112, 3)
    assert not aligned.any()


def test_degenerate_landmarks_are_rejected() -> None:
    with pytest.raises(ValueError, match="cannot align"):
        estimate_transform(np.zeros((5, 2), dtype=np.float32), ARCFACE_112)


@pytest.mark.parametrize("template", [ARCFACE_112, FACENET_160], ids=["arcface", "facenet"])
def test_stored_crop_reproduces_direct_alignment(
    yaoming: ImageArray, yaoming_face: DetectedFace, template: AlignTemplate
) -> None:
    crop, crop_landmarks = make_face_crop(yaoming, yaoming_face.landmarks)
    assert crop.shape == (224, 224, 3)
    assert crop.dtype == np.uint8
    assert crop_landmarks.shape == (5, 2)
    assert crop_landmarks.dtype == np.float32

    direct = align_face(yaoming, yaoming_face.landmarks, template).astype(float)
    via_crop = align_face(crop, crop_landmarks, template).astype(float)
    assert np.abs(direct - via_crop).mean() < 3.0

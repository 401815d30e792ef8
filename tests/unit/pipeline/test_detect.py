"""Tests for MTCNN detection on real photos, including coordinate mapping after downscaling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.pipeline.detect import FaceDetector
from app.pipeline.types import DetectedFace, ImageArray

ImageLoader = Callable[[Path], ImageArray]


def _inside(point: np.ndarray, face: DetectedFace) -> bool:
    x1, y1, x2, y2 = face.box
    return bool(x1 <= point[0] <= x2 and y1 <= point[1] <= y2)


def test_single_face(yaoming_face: DetectedFace, yaoming: ImageArray) -> None:
    face = yaoming_face
    assert face.probability > 0.95
    assert face.landmarks.shape == (5, 2)
    assert face.landmarks.dtype == np.float32
    assert all(_inside(point, face) for point in face.landmarks)
    # The box is a real face, not the whole frame.
    assert 40 < face.width < yaoming.shape[1]
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert left_eye[0] < right_eye[0]


def test_team_photo_has_many_faces_sorted_by_probability(
    detector: FaceDetector, package_images: Path, load_image: ImageLoader
) -> None:
    faces = detector.detect(load_image(package_images / "players.jpg"))
    assert len(faces) >= 20
    probabilities = [face.probability for face in faces]
    assert probabilities == sorted(probabilities, reverse=True)


def test_photos_without_people_give_no_faces(
    detector: FaceDetector,
    shared_faces: Path,
    manifest: list[dict[str, str]],
    load_image: ImageLoader,
) -> None:
    paths = [row["path"] for row in manifest if row["identity"] == "noface"]
    assert paths, "manifest lists no noface photos"
    for path in paths:
        assert detector.detect(load_image(shared_faces / path)) == [], path


def test_image_smaller_than_a_face_gives_no_faces(detector: FaceDetector) -> None:
    assert detector.detect(np.full((10, 12, 3), 128, dtype=np.uint8)) == []


def test_large_image_maps_back_to_original_coordinates(
    yaoming: ImageArray, yaoming_face: DetectedFace
) -> None:
    big = np.repeat(np.repeat(yaoming, 4, axis=0), 4, axis=1)
    small_detector = FaceDetector(torch.device("cpu"), max_side=320)
    assert max(big.shape[:2]) > small_detector.max_side  # so detection ran downscaled
    faces = small_detector.detect(big)
    assert len(faces) == 1
    # Pixel (x, y) of the original covers (4x .. 4x+3) in the upscaled copy.
    expected_box = np.array(yaoming_face.box) * 4 + 1.5
    expected_points = yaoming_face.landmarks * 4 + 1.5
    tolerance = 0.05 * 4 * yaoming_face.width
    assert np.abs(np.array(faces[0].box) - expected_box).max() < tolerance
    assert np.abs(faces[0].landmarks - expected_points).max() < tolerance


def test_detect_batch_keeps_images_apart(
    detector: FaceDetector, yaoming: ImageArray, yaoming_face: DetectedFace
) -> None:
    blank = np.full((120, 160, 3), 200, dtype=np.uint8)
    batches = detector.detect_batch([yaoming, blank])
    assert [len(faces) for faces in batches] == [1, 0]
    np.testing.assert_allclose(batches[0][0].box, yaoming_face.box, atol=1e-3)


@pytest.mark.parametrize("name", ["facenet_pytorch/multiface.jpg", "deepface/couple.jpg"])
def test_group_photos_find_several_faces(
    detect_shared: Callable[[str], tuple[list[DetectedFace], tuple[int, int]]], name: str
) -> None:
    faces, _ = detect_shared(name)
    assert len(faces) >= 2
    for face in faces:
        assert all(_inside(point, face) for point in face.landmarks)

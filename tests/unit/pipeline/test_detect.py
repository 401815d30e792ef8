"""Tests for MTCNN detection on real photos, including coordinate mapping after downscaling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN

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


@pytest.mark.parametrize(
    ("shape", "smallest"),
    [
        ((250, 250, 3), 32),  # not downscaled: the quality gate's minimum
        ((1920, 1080, 3), 40),  # x0.5: 16 px in the detection image, MTCNN's floor is 20
        ((4000, 3000, 3), 84),  # x0.24: 20 / 0.24 = 83.3
    ],
)
def test_smallest_face_searched_grows_with_downscaling(
    shape: tuple[int, int, int], smallest: int
) -> None:
    detector = FaceDetector(torch.device("cpu"), max_side=960, min_face_size=32)
    assert detector.smallest_face(shape) == smallest


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


def test_channels_last_nets_match_stock_mtcnn(detector: FaceDetector, yaoming: ImageArray) -> None:
    stock = MTCNN(keep_all=True, min_face_size=20, device=torch.device("cpu")).eval()
    boxes, probs, points = stock.detect(yaoming, landmarks=True)
    faces = detector.detect(yaoming)
    np.testing.assert_allclose(faces[0].box, np.asarray(boxes, dtype=np.float32)[0], atol=1e-3)
    np.testing.assert_allclose(faces[0].landmarks, np.asarray(points, np.float32)[0], atol=1e-3)
    assert faces[0].probability == pytest.approx(float(probs[0]), abs=1e-5)


def test_batches_match_stock_mtcnn_on_numpy(
    detector: FaceDetector, package_images: Path, load_image: ImageLoader
) -> None:
    item = detector.prepare(load_image(package_images / "players.jpg"))
    assert item is not None
    stock = MTCNN(keep_all=True, min_face_size=item.pyramid_min_face, device="cpu").eval()
    flipped = replace(item, image=np.ascontiguousarray(item.image[:, ::-1]))
    batch = np.stack([item.image, flipped.image])
    expected_boxes, expected_probs, expected_points = stock.detect(batch, landmarks=True)
    for (boxes, probs, points), i in zip(detector.run([item, flipped]), range(2), strict=True):
        want = np.asarray(expected_boxes[i], np.float32)
        assert len(boxes) == len(want) > 5  # every player, in both images
        ours, theirs = np.argsort(boxes[:, 0]), np.argsort(want[:, 0])  # same faces, any order
        np.testing.assert_allclose(boxes[ours], want[theirs], atol=1e-3)
        want_probs = np.asarray(expected_probs[i], np.float32)
        np.testing.assert_allclose(probs[ours], want_probs[theirs], atol=1e-5)
        want_points = np.asarray(expected_points[i], np.float32)
        np.testing.assert_allclose(points[ours], want_points[theirs], atol=1e-3)


def test_pyramid_skips_faces_below_the_minimum(yaoming: ImageArray) -> None:
    width = FaceDetector(torch.device("cpu")).detect(yaoming)[0].width
    assert FaceDetector(torch.device("cpu"), min_face_size=round(width * 0.8)).detect(yaoming)
    # A pyramid that starts at 3x the face's size cannot find it.
    assert not FaceDetector(torch.device("cpu"), min_face_size=round(width * 3)).detect(yaoming)


def test_minimum_face_is_scaled_into_the_detection_image() -> None:
    detector = FaceDetector(torch.device("cpu"), max_side=500, min_face_size=80)
    big = detector.prepare(np.zeros((1000, 2000, 3), dtype=np.uint8))
    assert big is not None and big.image.shape == (250, 500, 3)
    assert big.pyramid_min_face == 20  # 80 px at a quarter scale, floored at MTCNN's 20
    small = detector.prepare(np.zeros((300, 400, 3), dtype=np.uint8))
    assert small is not None and small.pyramid_min_face == 80
    assert detector.prepare(np.zeros((60, 400, 3), dtype=np.uint8)) is None


def test_run_refuses_inputs_that_cannot_share_a_pass(detector: FaceDetector) -> None:
    a = detector.prepare(np.zeros((100, 120, 3), dtype=np.uint8))
    b = detector.prepare(np.zeros((100, 140, 3), dtype=np.uint8))
    assert a is not None and b is not None
    with pytest.raises(ValueError, match="one size"):
        detector.run([a, b])


def test_detect_batch_shares_passes_and_matches_single_images(
    detector: FaceDetector, yaoming: ImageArray
) -> None:
    mirrored = np.ascontiguousarray(yaoming[:, ::-1])
    batched = detector.detect_batch([yaoming, mirrored, yaoming[:200]])
    single = [detector.detect(image) for image in (yaoming, mirrored, yaoming[:200])]
    for got, expected in zip(batched, single, strict=True):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=0.5)


def test_padded_second_look_maps_back_to_the_original(
    detector: FaceDetector, yaoming: ImageArray, yaoming_face: DetectedFace
) -> None:
    item = detector.prepare(yaoming)
    assert item is not None
    faces = detector.detect_padded(item)
    assert len(faces) == 1
    tolerance = 0.05 * yaoming_face.width
    assert np.abs(np.array(faces[0].box) - np.array(yaoming_face.box)).max() < tolerance
    assert np.abs(faces[0].landmarks - yaoming_face.landmarks).max() < tolerance


@pytest.mark.parametrize(
    "name", ["faceapi_js/bernadette/bernadette5.png", "faceapi_js/howard/howard5.png"]
)
def test_tight_face_crops_are_found_on_the_second_look(
    shared_faces: Path, load_image: ImageLoader, name: str
) -> None:
    image = load_image(shared_faces / name)
    detector = FaceDetector(torch.device("cpu"), min_face_size=32)
    item = detector.prepare(image)
    assert item is not None
    assert detector.to_faces(item, detector.run([item])[0]) == []  # MTCNN alone misses it
    faces = detector.detect(image)
    assert len(faces) == 1 and faces[0].probability > 0.95
    # The face fills the crop: its box covers most of the frame.
    assert faces[0].width > 0.6 * image.shape[1]


def test_a_batch_partner_never_changes_a_face(
    shared_faces: Path, load_image: ImageLoader, detector: FaceDetector
) -> None:
    # facenet-pytorch's batch-wide NMS broke a tie between two of sheldon4's boxes by the
    # other images of the batch: 8.8 px taller in this batch than alone.
    names = [
        "howard/howard1.png",
        "sheldon/sheldon4.png",
        "leonard/leonard4.png",
        "stuart/stuart1.png",
    ]
    images = [load_image(shared_faces / "faceapi_js" / name) for name in names]
    batched = detector.detect_batch(images)
    for image, got in zip(images, batched, strict=True):
        alone = detector.detect(image)
        assert len(got) == len(alone)
        # Batched convolutions round differently by about 1e-5 px; the tie cost 8.8 px.
        for a, b in zip(got, alone, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=0.01)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.01)

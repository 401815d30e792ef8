"""Tests for choosing one face: hand-computed synthetic cases and real group photos."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from app.pipeline.selection import select_face
from app.pipeline.types import DetectedFace, QualityReport

Detection = tuple[list[DetectedFace], tuple[int, int]]

SHAPE = (100, 200)  # height, width: the centre is (x=100, y=50)


def _face(box: tuple[float, float, float, float], probability: float = 1.0) -> DetectedFace:
    return DetectedFace(
        box=box, probability=probability, landmarks=np.zeros((5, 2), dtype=np.float32)
    )


def _quality(passed: bool) -> QualityReport:
    return QualityReport(
        face_size=0, probability=0, blur=0, reasons=[] if passed else ["blurry: 1.0 < 15.0"]
    )


# A: area 3600, centre (30, 30), offset^2 5300, prominent 3600 - 2 * 5300 = -7000
# B: area 1600, centre (100, 50), offset^2 0, prominent 1600
# C: area 2000, centre (170, 65), offset^2 5125, prominent 2000 - 2 * 5125 = -8250
FACES = [_face((0, 0, 60, 60)), _face((80, 30, 120, 70)), _face((150, 40, 190, 90))]


@pytest.mark.parametrize(
    ("policy", "expected"), [("largest", 0), ("center", 1), ("prominent", 1), ("best", 0)]
)
def test_policies_on_synthetic_faces(policy: str, expected: int) -> None:
    assert select_face(FACES, SHAPE, policy) == expected


def test_prominent_prefers_a_big_face_near_the_centre() -> None:
    # D: area 10000, centre (140, 50), offset^2 1600, prominent 10000 - 3200 = 6800 > 1600
    faces = [*FACES, _face((90, 0, 190, 100))]
    assert select_face(faces, SHAPE, "prominent") == 3
    assert select_face(faces, SHAPE, "center") == 1


def test_best_puts_passed_faces_first_then_probability_then_size() -> None:
    faces = [
        _face((0, 0, 90, 90), probability=0.999),  # biggest, but failed the gate
        _face((0, 0, 40, 40), probability=0.93),
        _face((0, 0, 30, 30), probability=0.97),
        _face((0, 0, 50, 50), probability=0.9660),  # rounds to 0.97 as well, and is bigger
    ]
    qualities = [_quality(False), _quality(True), _quality(True), _quality(True)]
    assert select_face(faces, SHAPE, "best", qualities) == 3
    assert select_face(faces, SHAPE, "best") == 0


def test_ties_go_to_the_first_face() -> None:
    twins = [_face((0, 0, 10, 10)), _face((20, 0, 30, 10))]
    assert select_face(twins, SHAPE, "largest") == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no faces"):
        select_face([], SHAPE, "largest")
    with pytest.raises(ValueError, match="unknown face policy 'biggest'"):
        select_face(FACES, SHAPE, "biggest")
    with pytest.raises(ValueError, match="quality reports"):
        select_face(FACES, SHAPE, "best", [_quality(True)])


def _areas_and_offsets(faces: list[DetectedFace], shape: tuple[int, int]) -> np.ndarray:
    boxes = np.array([face.box for face in faces])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    offsets = np.linalg.norm(centres - np.array([shape[1] / 2, shape[0] / 2]), axis=1)
    return np.stack([areas, offsets])


@pytest.mark.parametrize("name", ["facenet_pytorch/multiface.jpg", "deepface/couple.jpg"])
def test_largest_on_group_photos(detect_shared: Callable[[str], Detection], name: str) -> None:
    faces, shape = detect_shared(name)
    assert len(faces) >= 2
    areas, _ = _areas_and_offsets(faces, shape)
    assert select_face(faces, shape, "largest") == int(np.argmax(areas))


def test_prominent_on_a_couple(detect_shared: Callable[[str], Detection]) -> None:
    faces, shape = detect_shared("deepface/couple.jpg")
    areas, offsets = _areas_and_offsets(faces, shape)
    chosen = select_face(faces, shape, "prominent")
    # Here one face is both the biggest and the most central; prominent must find it.
    assert chosen == int(np.argmax(areas)) == int(np.argmin(offsets))


def test_prominent_on_a_group_favours_the_centre(
    detect_shared: Callable[[str], Detection],
) -> None:
    # In a wide group shot the squared pixel offset outweighs area, as in insightface:
    # prominent picks the most central face even though another is larger.
    faces, shape = detect_shared("facenet_pytorch/multiface.jpg")
    areas, offsets = _areas_and_offsets(faces, shape)
    chosen = select_face(faces, shape, "prominent")
    assert chosen == int(np.argmin(offsets))
    assert chosen == select_face(faces, shape, "center")
    assert offsets[chosen] < 0.2 * min(shape)

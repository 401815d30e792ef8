"""Pick the one face a single-face request is about."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.pipeline.types import DetectedFace, QualityReport

# insightface's weight on the squared centre offset in its "prominent face" rule.
_CENTRE_WEIGHT = 2.0

POLICIES = ("prominent", "largest", "center", "best")


def select_face(
    faces: Sequence[DetectedFace],
    image_shape: tuple[int, int],
    policy: str,
    qualities: Sequence[QualityReport] | None = None,
) -> int:
    """Index of the chosen face; `image_shape` is (height, width). Ties go to the first.

    - prominent: box area minus 2 x squared distance from the image centre (insightface).
    - largest: box area.
    - center: box centre nearest the image centre.
    - best: faces that passed the quality gate first, then detection probability rounded
      to 2 decimals (MTCNN saturates near 1.0, so finer digits are noise), then face size
      (the shorter box side), since a bigger face carries more identity detail.
    """
    if not faces:
        raise ValueError("no faces to select from")
    if qualities is not None and len(qualities) != len(faces):
        raise ValueError(f"{len(qualities)} quality reports for {len(faces)} faces")
    height, width = image_shape
    centre = (width / 2, height / 2)
    scores: dict[str, Callable[[int], tuple[float, ...]]] = {
        "prominent": lambda i: (_area(faces[i]) - _CENTRE_WEIGHT * _offset2(faces[i], centre),),
        "largest": lambda i: (_area(faces[i]),),
        "center": lambda i: (-_offset2(faces[i], centre),),
        "best": lambda i: _best_key(faces[i], None if qualities is None else qualities[i]),
    }
    if policy not in scores:
        raise ValueError(f"unknown face policy {policy!r}; expected one of {', '.join(POLICIES)}")
    # max() keeps the first of equal keys, so ties resolve to the detector's order.
    return max(range(len(faces)), key=scores[policy])


def _area(face: DetectedFace) -> float:
    return face.width * face.height


def _offset2(face: DetectedFace, centre: tuple[float, float]) -> float:
    x1, y1, x2, y2 = face.box
    return ((x1 + x2) / 2 - centre[0]) ** 2 + ((y1 + y2) / 2 - centre[1]) ** 2


def _best_key(face: DetectedFace, quality: QualityReport | None) -> tuple[float, ...]:
    passed = 1.0 if quality is None or quality.passed else 0.0
    return (passed, round(face.probability, 2), min(face.width, face.height))

"""MTCNN's boxes, probabilities and landmarks as DetectedFaces in original-image pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.pipeline.types import DetectedFace, FloatArray

RawDetection = tuple[Any, Any, Any]  # boxes (k, 4), probabilities (k,), landmarks (k, 5, 2)


def to_original_faces(
    boxes: Any,
    probs: Any,
    points: Any,
    original_shape: tuple[int, ...],
    small_shape: tuple[int, ...],
) -> list[DetectedFace]:
    """Faces found in an image of `small_shape`, scaled back to `original_shape`, most
    probable first."""
    # Under numpy 2 MTCNN hands back object arrays.
    box_array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    prob_array = np.asarray(probs, dtype=np.float32).reshape(-1)
    point_array = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
    # Per-axis factors from the actual sizes, with pixel centres at integer coordinates.
    scale_x = small_shape[1] / original_shape[1]
    scale_y = small_shape[0] / original_shape[0]
    box_array = _to_original(box_array.reshape(-1, 2, 2), scale_x, scale_y).reshape(-1, 4)
    point_array = _to_original(point_array, scale_x, scale_y)
    order = np.argsort(-prob_array, kind="stable")
    return [
        DetectedFace(
            box=(
                float(box_array[i, 0]),
                float(box_array[i, 1]),
                float(box_array[i, 2]),
                float(box_array[i, 3]),
            ),
            probability=float(prob_array[i]),
            landmarks=np.ascontiguousarray(point_array[i]),
        )
        for i in order
    ]


def _to_original(xy: FloatArray, scale_x: float, scale_y: float) -> FloatArray:
    if scale_x == 1.0 and scale_y == 1.0:
        return xy
    scale = np.array([scale_x, scale_y], dtype=np.float32)
    return ((xy + 0.5) / scale - 0.5).astype(np.float32)

"""Face detection with facenet-pytorch's MTCNN, in original-image coordinates."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from facenet_pytorch import MTCNN

from app.pipeline.image_io import downscale
from app.pipeline.types import DetectedFace, FloatArray, ImageArray


class FaceDetector:
    """Finds every face in an RGB image, with 5 landmarks each."""

    def __init__(self, device: torch.device, max_side: int = 1280, min_face_size: int = 20) -> None:
        self.device = device
        self.max_side = max_side
        # Applies to the downscaled image: on a photo shrunk by 4 the smallest face found
        # is 4 * min_face_size pixels in the original.
        self.min_face_size = min_face_size
        # MTCNN's P/R/O-net weights ship inside the wheel, so this never downloads.
        self._mtcnn = MTCNN(
            keep_all=True, select_largest=False, min_face_size=min_face_size, device=device
        )
        self._mtcnn.eval()
        # The nets are shared modules; serialise calls rather than rely on torch
        # re-entrancy from the inference thread pool.
        self._lock = threading.Lock()

    def detect(self, image: ImageArray) -> list[DetectedFace]:
        """Faces sorted by detection probability, highest first; [] when there are none."""
        small, _ = downscale(image, self.max_side)
        # MTCNN's image pyramid is empty (and it crashes) below one minimum face.
        if min(small.shape[:2]) < self.min_face_size:
            return []
        with self._lock:
            boxes, probs, points = self._mtcnn.detect(small, landmarks=True)
        if boxes is None:
            return []
        return _to_faces(boxes, probs, points, image.shape[:2], small.shape[:2])

    def detect_batch(self, images: list[ImageArray]) -> list[list[DetectedFace]]:
        """`detect` for each image; MTCNN only batches images of one size, so this loops."""
        return [self.detect(image) for image in images]


def _to_faces(
    boxes: Any,
    probs: Any,
    points: Any,
    original_shape: tuple[int, ...],
    small_shape: tuple[int, ...],
) -> list[DetectedFace]:
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

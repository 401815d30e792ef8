"""BatchingPipeline: a FacePipeline whose concurrent detect and embed calls share passes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.pipeline.analyzer import AnalyzedFace, FacePipeline, StageTimer
from app.pipeline.batching import MicroBatcher
from app.pipeline.detect import FaceDetector, _to_faces
from app.pipeline.embedders import Embedder
from app.pipeline.image_io import downscale
from app.pipeline.types import DetectedFace, FloatArray, ImageArray, QualityLimits

RawDetection = tuple[Any, Any, Any]  # MTCNN's boxes, probabilities and landmarks of one image


class BatchingPipeline(FacePipeline):
    """A FacePipeline whose detect and embed calls from concurrent threads share passes.

    Embedding batches any faces; detection batches images whose downscaled size is equal,
    which is the only kind MTCNN accepts as one batch.
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        limits: QualityLimits,
        on_timing: StageTimer | None = None,
        *,
        max_size: int,
        max_wait_s: float,
        max_callers: int | None = None,
        batch_detect: bool = True,
    ) -> None:
        super().__init__(detector, embedder, limits, on_timing=on_timing)
        self.embed_batcher: MicroBatcher[ImageArray, FloatArray] = MicroBatcher(
            self._embed_rows, max_size, max_wait_s, max_callers
        )
        self.detect_batcher: MicroBatcher[ImageArray, RawDetection] | None = (
            MicroBatcher(self._detect_images, max_size, max_wait_s, max_callers)
            if batch_detect
            else None
        )

    def detect(self, image: ImageArray) -> list[DetectedFace]:
        if self.detect_batcher is None:
            return super().detect(image)
        start = time.perf_counter()
        # Mirrors FaceDetector.detect, which has no batched form for one image at a time.
        small, _ = downscale(image, self.detector.max_side)
        faces: list[DetectedFace] = []
        if min(small.shape[:2]) >= self.detector.min_face_size:
            boxes, probs, points = self.detect_batcher([small], key=small.shape)[0]
            if boxes is not None:
                faces = _to_faces(boxes, probs, points, image.shape[:2], small.shape[:2])
        self._timed("detect", start)
        return faces

    def embed(self, faces: Sequence[AnalyzedFace]) -> FloatArray:
        return self.embed_aligned([face.aligned for face in faces])

    def embed_aligned(self, aligned: Sequence[ImageArray]) -> FloatArray:
        start = time.perf_counter()
        rows = self.embed_batcher(aligned)
        vectors = np.stack(rows) if rows else self.embedder.embed([])
        self._timed("embed", start)
        return vectors.astype(np.float32, copy=False)

    def close(self) -> None:
        self.embed_batcher.close()
        if self.detect_batcher is not None:
            self.detect_batcher.close()

    def _embed_rows(self, crops: list[ImageArray]) -> list[FloatArray]:
        return list(self.embedder.embed(crops))

    def _detect_images(self, images: list[ImageArray]) -> list[RawDetection]:
        # The detector's MTCNN and lock are shared with plain FacePipelines over the same models.
        with self.detector._lock:
            boxes, probs, points = self.detector._mtcnn.detect(np.stack(images), landmarks=True)
        return [(boxes[i], probs[i], points[i]) for i in range(len(images))]

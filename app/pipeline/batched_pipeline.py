"""BatchingPipeline: a FacePipeline whose concurrent detect and embed calls share passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from app.pipeline.analyzer import AnalyzedFace, FacePipeline, PipelineObserver
from app.pipeline.batching import MicroBatcher
from app.pipeline.detect import DetectionInput, FaceDetector
from app.pipeline.embedders import Embedder
from app.pipeline.mtcnn_output import RawDetection
from app.pipeline.types import DetectedFace, FloatArray, ImageArray, QualityLimits


class BatchingPipeline(FacePipeline):
    """A FacePipeline whose detect and embed calls from concurrent threads share passes.

    Embedding batches any faces; detection batches images whose downscaled size and
    smallest face are equal, which is the only kind MTCNN accepts as one batch.
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        limits: QualityLimits,
        observer: PipelineObserver | None = None,
        *,
        max_size: int,
        max_wait_s: float,
        callers: Callable[[], int] | None = None,
        batch_detect: bool = True,
    ) -> None:
        super().__init__(detector, embedder, limits, observer=observer)
        # A lane stops waiting for company once every caller that could join is queued:
        # the running requests (`callers`) less those in the other lane.
        self.embed_batcher: MicroBatcher[ImageArray, FloatArray] = MicroBatcher(
            self._embed_rows,
            max_size,
            max_wait_s,
            None if callers is None else lambda: callers() - self._occupancy(self.detect_batcher),
            self._batch_counter("embed"),
        )
        self.detect_batcher: MicroBatcher[DetectionInput, RawDetection] | None = None
        if batch_detect:
            self.detect_batcher = MicroBatcher(
                detector.run,
                max_size,
                max_wait_s,
                None if callers is None else lambda: callers() - self.embed_batcher.occupancy,
                self._batch_counter("detect"),
            )

    def detect(self, image: ImageArray) -> list[DetectedFace]:
        if self.detect_batcher is None:
            return super().detect(image)
        start = time.perf_counter()
        faces: list[DetectedFace] = []
        item = self.detector.prepare(image)
        if item is not None:
            raw = self.detect_batcher([item], key=item.batch_key)[0]
            faces = self.detector.faces(item, raw)
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

    @staticmethod
    def _occupancy(batcher: MicroBatcher[DetectionInput, RawDetection] | None) -> int:
        return 0 if batcher is None else batcher.occupancy

    def _batch_counter(self, lane: str) -> Callable[[int], None] | None:
        observer = self.observer
        if observer is None:
            return None
        return lambda items: observer.batch_items(lane, items)

    def _embed_rows(self, crops: list[ImageArray]) -> list[FloatArray]:
        return list(self.embedder.embed(crops))

"""FacePipeline: detect, align and grade every face, then embed them in one pass."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.pipeline.align import ARCFACE_112, align_face, estimate_transform, make_face_crop
from app.pipeline.detect import FaceDetector
from app.pipeline.embedders import Embedder
from app.pipeline.image_io import encode_png
from app.pipeline.quality import assess_quality
from app.pipeline.types import DetectedFace, FloatArray, ImageArray, QualityLimits, QualityReport


class PipelineObserver(Protocol):
    """Receives the pipeline's measurements (app/metrics.py turns them into metrics)."""

    def stage_seconds(self, stage: str, seconds: float) -> None:
        """Wall time of one detect or embed call."""

    def batch_items(self, lane: str, items: int) -> None:
        """Items in one batch that concurrent requests shared (BatchingPipeline)."""


@dataclass(frozen=True)
class AnalyzedFace:
    """A detected face, its quality report and the embedder-ready aligned crop."""

    face: DetectedFace
    quality: QualityReport
    aligned: ImageArray


@dataclass(frozen=True)
class StoredCrop:
    png: bytes
    landmarks: FloatArray


class FacePipeline:
    """Holds the loaded models; every method is blocking and meant for a worker thread."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        limits: QualityLimits,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.limits = limits
        self.observer = observer

    def _timed(self, stage: str, start: float) -> None:
        if self.observer is not None:
            self.observer.stage_seconds(stage, time.perf_counter() - start)

    def detect(self, image: ImageArray) -> list[DetectedFace]:
        start = time.perf_counter()
        faces = self.detector.detect(image)
        self._timed("detect", start)
        return faces

    def analyze(
        self, image: ImageArray, faces: Sequence[DetectedFace] | None = None
    ) -> list[AnalyzedFace]:
        detected = self.detect(image) if faces is None else list(faces)
        return [self._grade(image, face) for face in detected]

    def _grade(self, image: ImageArray, face: DetectedFace) -> AnalyzedFace:
        # Blur is measured on the same 112 px ArcFace crop so one threshold fits every embedder.
        transform = estimate_transform(face.landmarks, ARCFACE_112)  # for both: 0.15 ms
        reference = align_face(image, face.landmarks, ARCFACE_112, transform)
        quality = assess_quality(face, reference, self.limits, image.shape, transform)
        template = self.embedder.template
        same_template = template.size == ARCFACE_112.size and np.allclose(
            template.points, ARCFACE_112.points
        )
        aligned = reference if same_template else align_face(image, face.landmarks, template)
        return AnalyzedFace(face=face, quality=quality, aligned=aligned)

    def embed(self, faces: Sequence[AnalyzedFace]) -> FloatArray:
        start = time.perf_counter()
        vectors = self.embedder.embed([face.aligned for face in faces])
        self._timed("embed", start)
        return vectors

    def embed_aligned(self, aligned: Sequence[ImageArray]) -> FloatArray:
        start = time.perf_counter()
        vectors = self.embedder.embed(aligned)
        self._timed("embed", start)
        return vectors

    @staticmethod
    def stored_crop(image: ImageArray, face: DetectedFace) -> StoredCrop:
        crop, landmarks = make_face_crop(image, face.landmarks)
        return StoredCrop(png=encode_png(crop), landmarks=landmarks)

"""Plain data passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ImageArray = npt.NDArray[np.uint8]  # H x W x 3, RGB


@dataclass(frozen=True)
class DetectedFace:
    """One MTCNN detection in original-image pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    probability: float
    # (5, 2): left eye, right eye, nose, left and right mouth corners (as MTCNN orders them)
    landmarks: FloatArray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class AlignTemplate:
    """Where the 5 landmarks land in an aligned square crop of `size` pixels."""

    size: int
    points: FloatArray  # (5, 2)


@dataclass(frozen=True)
class QualityLimits:
    min_face_size: int
    min_probability: float
    min_blur: float


@dataclass(frozen=True)
class QualityReport:
    """Outcome of the quality gate; `reasons` is empty when it passed."""

    face_size: float
    probability: float
    blur: float
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

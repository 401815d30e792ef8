"""Quality gate for a detected face: size, detection probability and blur."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from app.pipeline.types import DetectedFace, ImageArray, QualityLimits, QualityReport

# ITU-R BT.601 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])


def blur_variance(aligned: ImageArray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey face on a 0..255 scale.

    The kernel is OpenCV's default for cv2.Laplacian, so thresholds quoted for the
    common `cv2.Laplacian(gray, cv2.CV_64F).var()` recipe carry over.
    """
    gray = aligned.astype(np.float64) @ _LUMA
    return float(ndimage.laplace(gray, mode="reflect").var())


def assess_quality(
    face: DetectedFace, aligned_112: ImageArray, limits: QualityLimits
) -> QualityReport:
    """Check a face against the limits; each failure adds a reason with a stable prefix."""
    size = min(face.width, face.height)
    blur = blur_variance(aligned_112)
    reasons = []
    if size < limits.min_face_size:
        reasons.append(f"face_too_small: {_below(size, limits.min_face_size, 0, ' px')}")
    if face.probability < limits.min_probability:
        reasons.append(
            f"low_detection_probability: {_below(face.probability, limits.min_probability, 2)}"
        )
    if blur < limits.min_blur:
        reasons.append(f"blurry: {_below(blur, limits.min_blur, 1)}")
    return QualityReport(face_size=size, probability=face.probability, blur=blur, reasons=reasons)


def _below(value: float, limit: float, decimals: int, unit: str = "") -> str:
    """`value < limit`, with enough decimals that rounding never prints them equal."""
    shown = f"{value:.{decimals}f}"
    while float(shown) >= limit and decimals < 6:
        decimals += 1
        shown = f"{value:.{decimals}f}"
    return f"{shown}{unit} < {limit:.{decimals}f}{unit}"

"""Quality gate for a detected face: size, probability, blur, and the whole face in frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.transform import SimilarityTransform

from app.pipeline.align import ARCFACE_112, inside_photo
from app.pipeline.types import DetectedFace, ImageArray, QualityLimits, QualityReport

# ITU-R BT.601 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])

# How far outside the image a landmark may lie, as a fraction of the face's size, before the
# face counts as cut by the border. MTCNN guesses landmarks beyond the edge for a face cut
# through an eye or the nose; aligned, such a face is partly black, and cut faces of
# different people matched each other at cosine 0.69 (an audit, stop 13).
OUT_OF_FRAME_TOLERANCE = 0.05

# Sharpness is the variance of the face centre's Laplacian of Gaussian (sigma 1 px), the
# scale of eyelids and lip edges on the 112 px crop. The plain 3x3 Laplacian mostly measured
# pixel noise: a dim face is a noisy one, and stretched to ordinary contrast (below) a
# featureless blurred face passed on its noise alone.
SHARPNESS_SIGMA = 1.0
# The variance grows with the square of the face's contrast, so a sharp face in dim light
# read as blurry: darkened to a quarter, 542 of 776 probes of the shared pairs failed the
# gate while verification on them stayed at 98.97% accuracy (against 99.23%). A face whose
# centre has a grey standard deviation under CONTRAST_REFERENCE (about the median of the
# shared photos) is judged as if stretched to it, by at most MAX_CONTRAST_GAIN, past which
# a near-black face is too noisy to judge. Measured on the 122 shared faces, bright or
# dimmed to a quarter, with sensor noise of 0-2 grey levels: every sharp face but one
# scored over 25, every face blurred by a 2 px Gaussian but one under it.
CONTRAST_REFERENCE = 50.0
MAX_CONTRAST_GAIN = 4.0
# The centre of the 112 px ArcFace crop: the face itself, without background or the black
# fill that alignment leaves where the photo ends (whose edge is no sign of sharpness).
_CENTRE = (slice(16, 96), slice(16, 96))
# Where a tightly cropped photo ends inside that centre, the fill's edge is measured too: on
# the shared 150 px portraits a photo blurred by 4 px (Gaussian sigma) still scored 36-110
# and passed. Pixels this close to the edge (the LoG kernel's reach at sigma 1) are left out.
PHOTO_EDGE_MARGIN = 4.0 * SHARPNESS_SIGMA
# Below this many pixels of the photo in the centre (a 20 px square), the whole centre counts.
MIN_PHOTO_PIXELS = 400


def blur_variance(aligned: ImageArray, photo: npt.NDArray[np.bool_] | None = None) -> float:
    """Sharpness of an aligned 112 px face: the variance of its grey centre's Laplacian of
    Gaussian (sigma 1 px, grey levels 0..255), contrast-normalised (CONTRAST_REFERENCE).
    `photo` (align.inside_photo) keeps to the centre's pixels that come from the photo."""
    gray = aligned.astype(np.float64) @ _LUMA
    response = ndimage.gaussian_laplace(gray, SHARPNESS_SIGMA, mode="reflect")
    region = np.zeros(gray.shape, dtype=bool)
    region[_CENTRE if min(gray.shape) >= 96 else (slice(None), slice(None))] = True
    if photo is not None and np.count_nonzero(region & photo) >= MIN_PHOTO_PIXELS:
        region &= photo
    return float(response[region].var()) * contrast_gain(gray[region]) ** 2


def contrast_gain(centre: npt.NDArray[np.float64]) -> float:
    """How much a low-contrast face's grey levels are stretched before its sharpness counts."""
    spread = float(centre.std())
    if spread >= CONTRAST_REFERENCE:
        return 1.0
    return min(MAX_CONTRAST_GAIN, CONTRAST_REFERENCE / max(spread, 1e-9))


def assess_quality(
    face: DetectedFace,
    aligned_112: ImageArray,
    limits: QualityLimits,
    image_shape: tuple[int, ...] | None = None,
    transform: SimilarityTransform | None = None,
) -> QualityReport:
    """Check a face against the limits; each failure adds a reason with a stable prefix.
    With `image_shape`, a face with landmarks outside the image fails as out_of_frame.
    `transform`: the one `aligned_112` was warped with, when the caller has it."""
    size = min(face.width, face.height)
    photo = None
    if image_shape is not None and aligned_112.shape[:2] == (ARCFACE_112.size,) * 2:
        photo = inside_photo(face.landmarks, ARCFACE_112, image_shape, PHOTO_EDGE_MARGIN, transform)
    blur = blur_variance(aligned_112, photo)
    reasons = []
    if size < limits.min_face_size:
        reasons.append(f"face_too_small: {_below(size, limits.min_face_size, 0, ' px')}")
    if face.probability < limits.min_probability:
        reasons.append(
            f"low_detection_probability: {_below(face.probability, limits.min_probability, 2)}"
        )
    if blur < limits.min_blur:
        reasons.append(f"blurry: {_below(blur, limits.min_blur, 1)}")
    outside = 0 if image_shape is None else landmarks_outside(face, image_shape)
    if outside:
        reasons.append(f"out_of_frame: {outside} of 5 landmarks outside the image")
    return QualityReport(face_size=size, probability=face.probability, blur=blur, reasons=reasons)


def landmarks_outside(face: DetectedFace, image_shape: tuple[int, ...]) -> int:
    """How many of the face's landmarks lie outside the image, beyond a small tolerance."""
    height, width = image_shape[:2]
    slack = OUT_OF_FRAME_TOLERANCE * max(face.width, face.height)
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    inside = (x >= -slack) & (x <= width + slack) & (y >= -slack) & (y <= height + slack)
    return int(np.count_nonzero(~inside))


def _below(value: float, limit: float, decimals: int, unit: str = "") -> str:
    """`value < limit`, with enough decimals that rounding never prints them equal."""
    shown = f"{value:.{decimals}f}"
    while float(shown) >= limit and decimals < 6:
        decimals += 1
        shown = f"{value:.{decimals}f}"
    return f"{shown}{unit} < {limit:.{decimals}f}{unit}"

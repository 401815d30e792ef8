"""Warp a face onto a 5-landmark template with a similarity transform."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image
from skimage.transform import SimilarityTransform, warp

from app.pipeline.types import AlignTemplate, FloatArray, ImageArray

# insightface's arcface_dst: the landmark positions every ArcFace model was trained on.
ARCFACE_112 = AlignTemplate(
    size=112,
    points=np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ],
        dtype=np.float32,
    ),
)


def _reframe(
    template: AlignTemplate, size: int, centre: tuple[float, float], span: float
) -> AlignTemplate:
    """The same landmarks in a `size` square that shows `span` template units around `centre`."""
    scale = size / span
    points = (template.points - np.array(centre, dtype=np.float32)) * scale + size / 2
    return AlignTemplate(size=size, points=points.astype(np.float32))


# facenet-pytorch's InceptionResnetV1 (VGGFace2) was trained on MTCNN box crops with a
# small margin, resized to 160x160. Mapping MTCNN boxes from 38 frontal photos of
# ../shared/faces into ARCFACE_112 units gives a box centred at (56, 64.2), 77 wide and
# 104 tall. MTCNN boxes are not square, and that crop squashes them; a similarity
# transform cannot, so the square side is their geometric mean (90) plus 10 % margin.
FACENET_160 = _reframe(ARCFACE_112, 160, centre=(56.0, 64.2), span=1.1 * math.sqrt(77.2 * 104.4))

# The stored crop: ARCFACE_112's frame widened 1.5x about its centre, at 224 px. It holds
# the whole FACENET_160 frame and ARCFACE_112 at 1.33 px per unit, so either embedder's
# input (or a future one's) can be re-derived from it without the original photo.
CROP_224 = _reframe(ARCFACE_112, 224, centre=(56.0, 56.0), span=1.5 * 112)

# Below this warp scale bilinear sampling skips source pixels and aliases; shrink first.
_MIN_WARP_SCALE = 0.5


def estimate_transform(landmarks: FloatArray, template: AlignTemplate) -> SimilarityTransform:
    """Least-squares similarity taking the 5 image landmarks onto the template points."""
    source = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    target = np.asarray(template.points, dtype=np.float64)
    transform = SimilarityTransform.from_estimate(source, target)
    if not isinstance(transform, SimilarityTransform):
        raise ValueError(f"cannot align these landmarks: {transform}")
    return transform


def align_face(
    image: ImageArray,
    landmarks: FloatArray,
    template: AlignTemplate,
    transform: SimilarityTransform | None = None,
) -> ImageArray:
    """The template-sized square face crop (uint8 RGB), black where it leaves the image.
    `transform`: estimate_transform's for these landmarks, when the caller has it already."""
    if transform is None:
        transform = estimate_transform(landmarks, template)
    size = template.size
    # Work on the patch the output square maps from, not on the whole photo: warp
    # converts its whole input to float64.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    source_corners = transform.inverse(corners)
    height, width = image.shape[:2]
    x0 = max(math.floor(source_corners[:, 0].min()) - 2, 0)
    y0 = max(math.floor(source_corners[:, 1].min()) - 2, 0)
    x1 = min(math.ceil(source_corners[:, 0].max()) + 2, width)
    y1 = min(math.ceil(source_corners[:, 1].max()) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), dtype=np.uint8)
    patch = image[y0:y1, x0:x1]
    # Output pixel -> original pixel -> patch pixel.
    to_patch = _translation(-x0, -y0) @ transform.inverse.params
    if transform.scale < _MIN_WARP_SCALE:
        patch, to_patch = _shrink(patch, transform.scale, to_patch)
    # A 3x3 matrix (rather than a callable) takes warp's fast Cython path.
    warped: npt.NDArray[np.float64] = warp(  # type: ignore[no-untyped-call]
        patch,
        to_patch,
        output_shape=(size, size),
        order=1,
        mode="constant",
        cval=0.0,
        preserve_range=True,
    )
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def inside_photo(
    landmarks: FloatArray,
    template: AlignTemplate,
    image_shape: tuple[int, ...],
    margin: float,
    transform: SimilarityTransform | None = None,
) -> npt.NDArray[np.bool_] | None:
    """Which pixels of align_face's crop come from the photo, `margin` crop pixels or more
    from its edge: the rest is the black fill, or mixed with it. None when all of them do.
    `transform` as for align_face."""
    if transform is None:
        transform = estimate_transform(landmarks, template)
    to_source = np.linalg.inv(transform.params)  # crop pixel -> photo pixel, affine
    last = template.size - 1.0
    # In photo pixels; one more for the bilinear warp's reach across the edge.
    edge = margin / transform.scale + 1.0
    height, width = image_shape[:2]

    def inside(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        kept: npt.NDArray[np.bool_] = (
            (x >= edge) & (x <= width - 1 - edge) & (y >= edge) & (y <= height - 1 - edge)
        )
        return kept

    corners = to_source[:2] @ np.array([[0, last, 0, last], [0, 0, last, last], [1, 1, 1, 1]])
    if inside(corners[0], corners[1]).all():  # most faces: the crop lies within the photo
        return None
    steps = np.arange(template.size, dtype=np.float64)
    across, down = steps[np.newaxis, :], steps[:, np.newaxis]
    x = to_source[0, 0] * across + to_source[0, 1] * down + to_source[0, 2]
    y = to_source[1, 0] * across + to_source[1, 1] * down + to_source[1, 2]
    return inside(x, y)


def make_face_crop(image: ImageArray, landmarks: FloatArray) -> tuple[ImageArray, FloatArray]:
    """The stored CROP_224 crop and the landmarks in its coordinates."""
    crop = align_face(image, landmarks, CROP_224)
    transform = estimate_transform(landmarks, CROP_224)
    crop_landmarks = transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2))
    return crop, crop_landmarks.astype(np.float32)


def _translation(dx: float, dy: float) -> npt.NDArray[np.float64]:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _shrink(
    patch: ImageArray, scale: float, to_patch: npt.NDArray[np.float64]
) -> tuple[ImageArray, npt.NDArray[np.float64]]:
    """Antialiased pre-shrink so the warp itself samples at about one pixel per pixel."""
    height, width = patch.shape[:2]
    new_width = max(1, round(width * scale))
    new_height = max(1, round(height * scale))
    small = Image.fromarray(np.ascontiguousarray(patch)).resize(
        (new_width, new_height), Image.Resampling.BILINEAR
    )
    # Pixel centres: x_small + 0.5 = (x + 0.5) * new_width / width.
    sx, sy = new_width / width, new_height / height
    rescale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return np.asarray(small, dtype=np.uint8), rescale @ to_patch

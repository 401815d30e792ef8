"""Tests for the quality gate on real, blurred and shrunken faces, and its reason strings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from app.config import Settings
from app.pipeline.align import ARCFACE_112, align_face, inside_photo
from app.pipeline.detect import FaceDetector
from app.pipeline.image_io import downscale
from app.pipeline.quality import (
    CONTRAST_REFERENCE,
    MAX_CONTRAST_GAIN,
    assess_quality,
    blur_variance,
    contrast_gain,
)
from app.pipeline.types import DetectedFace, ImageArray, QualityLimits
from tests.unit.pipeline.conftest import Detection, ImageLoader

LIMITS = QualityLimits(min_face_size=32, min_probability=0.90, min_blur=15.0)
DEFAULT_MIN_BLUR: float = Settings.model_fields["min_blur_variance"].default


def _face(width: float, height: float, probability: float) -> DetectedFace:
    landmarks = ARCFACE_112.points.copy()
    return DetectedFace(
        box=(10.0, 10.0, 10.0 + width, 10.0 + height), probability=probability, landmarks=landmarks
    )


def _first_face(detector: FaceDetector, image: ImageArray) -> tuple[DetectedFace, ImageArray]:
    faces = detector.detect(image)
    assert faces, "no face detected"
    return faces[0], align_face(image, faces[0].landmarks, ARCFACE_112)


def test_sharp_face_passes(detector: FaceDetector, yaoming: ImageArray) -> None:
    face, aligned = _first_face(detector, yaoming)
    report = assess_quality(face, aligned, LIMITS)
    assert report.passed, report.reasons
    assert report.blur > 2 * DEFAULT_MIN_BLUR
    assert report.face_size == min(face.width, face.height)
    assert report.probability == face.probability


def test_blurred_face_fails_as_blurry(detector: FaceDetector, yaoming: ImageArray) -> None:
    blurred = ndimage.gaussian_filter(yaoming.astype(float), sigma=(3, 3, 0))
    face, aligned = _first_face(detector, np.clip(blurred, 0, 255).astype(np.uint8))
    report = assess_quality(face, aligned, LIMITS)
    assert not report.passed
    assert [reason.split(":")[0] for reason in report.reasons] == ["blurry"]


def test_shrunken_face_fails_as_too_small(detector: FaceDetector, yaoming: ImageArray) -> None:
    small, _ = downscale(yaoming, max(yaoming.shape[:2]) // 4)
    face, aligned = _first_face(detector, small)
    report = assess_quality(face, aligned, LIMITS)
    assert "face_too_small" in [reason.split(":")[0] for reason in report.reasons]


def test_reason_strings() -> None:
    flat = np.full((112, 112, 3), 128, dtype=np.uint8)
    report = assess_quality(_face(20, 30, 0.81), flat, LIMITS)
    assert report.reasons == [
        "face_too_small: 20 px < 32 px",
        "low_detection_probability: 0.81 < 0.90",
        "blurry: 0.0 < 15.0",
    ]
    assert report.face_size == 20


def test_reasons_never_print_value_and_limit_equal() -> None:
    flat = np.full((112, 112, 3), 128, dtype=np.uint8)
    report = assess_quality(_face(31.8, 40, 0.899), flat, LIMITS)
    assert report.reasons[:2] == [
        "face_too_small: 31.8 px < 32.0 px",
        "low_detection_probability: 0.899 < 0.900",
    ]


def test_sharpness_is_zero_on_a_flat_face_and_judges_the_centre_only(
    detector: FaceDetector, yaoming: ImageArray
) -> None:
    assert blur_variance(np.full((112, 112, 3), 77, dtype=np.uint8)) == 0.0
    _, aligned = _first_face(detector, yaoming)
    # Alignment leaves black fill where a face nears the photo's edge: its hard edge is not
    # a sign of a sharp face.
    framed = aligned.copy()
    framed[:12], framed[-12:], framed[:, :12], framed[:, -12:] = 0, 0, 0, 0
    assert blur_variance(framed) == blur_variance(aligned)


def test_a_face_cut_by_the_border_fails_as_out_of_frame(
    detector: FaceDetector, yaoming: ImageArray
) -> None:
    face, _ = _first_face(detector, yaoming)
    eyes_x = face.landmarks[:2, 0]
    # Cut through the middle of the left eye (the image's left): half a face is left.
    cut = np.ascontiguousarray(yaoming[:, round(eyes_x.min()) :])
    cut_face, aligned = _first_face(detector, cut)
    report = assess_quality(cut_face, aligned, LIMITS, cut.shape)
    assert [reason.split(":")[0] for reason in report.reasons] == ["out_of_frame"], report
    # The whole photo's face keeps every landmark inside, and passes.
    aligned_whole = align_face(yaoming, face.landmarks, ARCFACE_112)
    whole = assess_quality(face, aligned_whole, LIMITS, yaoming.shape)
    assert whole.passed


def test_out_of_frame_counts_landmarks_beyond_a_small_tolerance() -> None:
    flat = np.full((112, 112, 3), 128, dtype=np.uint8)
    lenient = QualityLimits(min_face_size=0, min_probability=0.0, min_blur=0.0)
    face = _face(100, 100, 0.99)  # landmarks at x 38-74, y 52-92
    assert assess_quality(face, flat, lenient, (112, 112, 3)).passed
    # 5% of the face (5 px) beyond the edge is tolerated; further is not.
    assert assess_quality(face, flat, lenient, (112, 70, 3)).passed  # x 73.5 <= 70 + 5
    narrow = assess_quality(face, flat, lenient, (112, 60, 3))
    assert narrow.reasons == ["out_of_frame: 2 of 5 landmarks outside the image"]


def _scaled(image: ImageArray, factor: float) -> ImageArray:
    return np.clip(np.round(image.astype(float) * factor), 0, 255).astype(np.uint8)


def test_a_sharp_face_in_dim_light_is_not_blurry(
    detector: FaceDetector, yaoming: ImageArray
) -> None:
    face, aligned = _first_face(detector, yaoming)
    default = QualityLimits(min_face_size=32, min_probability=0.90, min_blur=DEFAULT_MIN_BLUR)
    dim = _scaled(aligned, 0.25)
    # Raw Laplacian variance falls with the square of the light; the gate used to read that
    # as blur. Stretched back to ordinary contrast, the dim face keeps its sharpness.
    assert assess_quality(face, dim, default).passed
    assert blur_variance(dim) > 0.5 * blur_variance(aligned)
    blurred = ndimage.gaussian_filter(aligned.astype(float), sigma=(2, 2, 0))
    rng = np.random.default_rng(0)
    for noise in (0.0, 0.5, 1.0, 2.0):  # a dim photo is a noisy one
        dim_blurred = _scaled(blurred + rng.normal(0, noise / 0.25, blurred.shape), 0.25)
        reasons = assess_quality(face, dim_blurred, default).reasons
        assert [r.split(":")[0] for r in reasons] == ["blurry"], noise


def test_the_contrast_gain_stretches_only_low_contrast_and_is_capped() -> None:
    def spread(std: float) -> npt.NDArray[np.float64]:
        return 128.0 + std * np.where(np.indices((80, 80)).sum(axis=0) % 2 == 0, 1.0, -1.0)

    assert contrast_gain(spread(60.0)) == 1.0
    assert contrast_gain(spread(CONTRAST_REFERENCE)) == 1.0
    assert contrast_gain(spread(CONTRAST_REFERENCE / 2)) == pytest.approx(2.0)
    # Past the cap a near-black face's noise would be stretched into "detail".
    assert contrast_gain(spread(2.0)) == MAX_CONTRAST_GAIN
    assert contrast_gain(np.full((80, 80), 9.0)) == MAX_CONTRAST_GAIN


def test_every_shared_face_dimmed_to_a_quarter_stays_sharp_and_blurred_stays_blurry(
    detect_shared: Callable[[str], Detection],
    manifest: list[dict[str, str]],
    shared_faces: Path,
    load_image: ImageLoader,
) -> None:
    """On the shared photos, with a camera's noise of 1 grey level: dimming a face does not
    make it fail the default gate, and a Gaussian blur of 2 px still does, bright or dim."""
    rng = np.random.default_rng(0)
    checked, failures = 0, []
    for row in manifest:
        faces, _ = detect_shared(row["path"])
        if not faces:
            continue
        image = load_image(shared_faces / row["path"])
        aligned = align_face(image, faces[0].landmarks, ARCFACE_112).astype(float)
        checked += 1
        blurred = ndimage.gaussian_filter(aligned, sigma=(2, 2, 0))
        for light in (1.0, 0.25):
            noise = rng.normal(0, 1.0, aligned.shape)
            if blur_variance(_scaled(aligned * light + noise, 1.0)) < DEFAULT_MIN_BLUR:
                failures.append(("sharp", row["path"], light))
            if blur_variance(_scaled(blurred * light + noise, 1.0)) >= DEFAULT_MIN_BLUR:
                failures.append(("blurred", row["path"], light))
    assert checked >= 100
    # Of 4 x 122 judgements, one or two sit at the boundary (measured: 1 with this seed).
    assert len(failures) <= 3, failures


def test_only_the_photo_counts_in_the_sharpness_of_a_tightly_cropped_face(
    detector: FaceDetector, manifest: list[dict[str, str]], shared_faces: Path
) -> None:
    """The shared 150 px portraits end inside the aligned face's centre. The black fill's
    edge counted as detail there: blurred by a 4 px Gaussian, most still passed the gate
    (a docs audit). Now only pixels of the photo count."""
    from PIL import Image, ImageFilter

    limits = QualityLimits(min_face_size=32, min_probability=0.90, min_blur=DEFAULT_MIN_BLUR)
    portraits = [row["path"] for row in manifest if row["path"].startswith("faceapi_js/")]
    sharp_failed, blurred_passed, tight = [], [], 0
    for path in portraits:
        photo = Image.open(shared_faces / path).convert("RGB")
        for blur, failures in ((0, sharp_failed), (4, blurred_passed)):
            image = np.asarray(photo.filter(ImageFilter.GaussianBlur(blur)) if blur else photo)
            faces = detector.detect(image)
            if not faces:
                continue
            aligned = align_face(image, faces[0].landmarks, ARCFACE_112)
            tight += blur == 0 and bool((aligned == 0).all(axis=2).any())
            report = assess_quality(faces[0], aligned, limits, image.shape)
            if any(r.startswith("blurry") for r in report.reasons) == (blur == 0):
                failures.append((path, report.blur))
    assert len(portraits) >= 40 and tight >= 30  # most portraits leave black fill
    assert sharp_failed == []
    # Measured: none of the 43 blurred portraits passes, against 36 (blur 36-118) before.
    assert blurred_passed == []


def test_the_photo_mask_matches_the_fill_that_alignment_leaves() -> None:
    white = np.full((150, 130, 3), 255, dtype=np.uint8)
    landmarks = (ARCFACE_112.points.astype(np.float64) * 1.6 - 20).astype(np.float32)
    aligned = align_face(white, landmarks, ARCFACE_112)
    mask = inside_photo(landmarks, ARCFACE_112, white.shape, margin=0.0)
    assert mask is not None and 0 < mask.sum() < mask.size
    # Every pixel the mask keeps is the photo's alone; every pixel touched by the fill is out.
    assert (aligned[mask] == 255).all()
    assert not mask[(aligned < 255).any(axis=2)].any()
    # A margin keeps pixels that far from the edge only.
    inner = inside_photo(landmarks, ARCFACE_112, white.shape, margin=4.0)
    assert inner is not None and (inner <= mask).all() and inner.sum() < mask.sum()
    # A face well inside a large photo needs no mask.
    assert inside_photo(landmarks + 200, ARCFACE_112, (800, 800, 3), margin=4.0) is None

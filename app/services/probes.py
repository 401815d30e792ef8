"""Turning uploaded bytes into graded, embedded faces (blocking; runs on the inference pool)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from app.config import FacePolicy, Settings
from app.errors import FaceServiceError, LowQuality, MultipleFaces, NoFace
from app.pipeline.analyzer import AnalyzedFace, FacePipeline
from app.pipeline.image_io import check_upload_size, decode_image
from app.pipeline.selection import select_face
from app.pipeline.types import FloatArray, ImageArray


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Probe:
    """The chosen face of one image, with its embedding."""

    face: AnalyzedFace
    vector: FloatArray
    sha256: str


def load_image(settings: Settings, upload: Upload) -> ImageArray:
    check_upload_size(upload.data, settings.max_upload_bytes)
    return decode_image(upload.data, settings.max_image_pixels)


def choose_face(
    pipeline: FacePipeline, image: ImageArray, policy: FacePolicy | None
) -> AnalyzedFace:
    """Pick one face, preferring faces that pass the quality gate.

    Faces failing the gate (often low-probability false detections) don't count as extra
    faces. Without a policy, an image with several acceptable faces is refused.
    """
    detected = pipeline.detect(image)
    if not detected:
        raise no_face(pipeline, image.shape)
    analyzed = pipeline.analyze(image, detected)
    pool = [a for a in analyzed if a.quality.passed] or analyzed
    if len(pool) == 1:
        return pool[0]
    if policy is None:
        raise MultipleFaces(
            f"The image holds {len(pool)} faces; pass face=prominent|largest|center|best "
            "to choose one.",
            details={"faces": len(pool), "boxes": [list(a.face.box) for a in pool]},
        )
    chosen = select_face(
        [a.face for a in pool], (image.shape[0], image.shape[1]), policy, [a.quality for a in pool]
    )
    return pool[chosen]


def embed_probes(
    pipeline: FacePipeline,
    settings: Settings,
    uploads: list[Upload],
    policy: FacePolicy,
    labels: Sequence[str] = (),
) -> list[Probe]:
    """Decode, detect and choose a face in each upload, then embed all in one forward pass.

    With several uploads, an error names the one it is about: `labels`, or upload 1, 2, ...
    """
    faces = []
    for position, upload in enumerate(uploads):
        try:
            # Only the chosen face's aligned crop is kept, not the decoded image.
            face = choose_face(pipeline, load_image(settings, upload), policy)
            if settings.probe_quality == "refuse":
                require_quality(face, "compare")
            faces.append(face)
        except FaceServiceError as error:
            if len(uploads) == 1:
                raise
            label = labels[position] if labels else f"upload {position + 1}"
            raise _about(error, label) from error
    vectors = pipeline.embed(faces)
    return [
        Probe(face=face, vector=vectors[i], sha256=sha256_hex(upload.data))
        for i, (face, upload) in enumerate(zip(faces, uploads, strict=True))
    ]


def require_quality(face: AnalyzedFace, purpose: str) -> None:
    """LowQuality, with the gate's reasons, unless `face` passed the quality gate."""
    if not face.quality.passed:
        raise LowQuality(
            f"The face is not good enough to {purpose}: " + "; ".join(face.quality.reasons),
            details={"reasons": face.quality.reasons},
        )


def _about(error: FaceServiceError, label: str) -> FaceServiceError:
    """The same error, its message and details naming the upload it is about."""
    details = error.details
    if not isinstance(details, dict):
        details = {} if details is None else {"details": details}
    return type(error)(f"{label}: {error.message}", details={"upload": label, **details})


def no_face(pipeline: FacePipeline, shape: tuple[int, ...]) -> NoFace:
    # Smaller faces are not searched for (the quality gate would refuse them), so say so.
    size = pipeline.detector.smallest_face(shape)
    return NoFace(f"No face of at least {size} px was found in the image.")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageFaces:
    """The largest faces of an image, graded, and how many were detected in all; the
    image's shape, not its pixels, which go as soon as the faces are graded."""

    shape: tuple[int, ...]
    faces: list[AnalyzedFace]
    found: int


def analyze_all(
    pipeline: FacePipeline, settings: Settings, upload: Upload, max_faces: int
) -> tuple[ImageFaces, FloatArray]:
    """Every face of an image (largest first, at most max_faces), embedded in one pass."""
    graded = detect_all(pipeline, settings, upload, max_faces)
    if not graded.found:
        raise no_face(pipeline, graded.shape)
    return graded, pipeline.embed(graded.faces)


def detect_all(
    pipeline: FacePipeline, settings: Settings, upload: Upload, max_faces: int
) -> ImageFaces:
    """The largest `max_faces` faces of an image, graded. Only those are aligned and
    graded, so a crowd photo costs one detection pass, not a pass per face."""
    image = load_image(settings, upload)
    detected = sorted(pipeline.detect(image), key=lambda f: f.width * f.height, reverse=True)
    faces = pipeline.analyze(image, detected[:max_faces]) if detected else []
    return ImageFaces(shape=image.shape, faces=faces, found=len(detected))

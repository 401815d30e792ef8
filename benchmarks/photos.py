"""The shared photo set as upload bytes, as 250 px face crops, and as aligned faces."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Photo:
    path: str
    identity: str
    data: bytes  # JPEG or PNG bytes, as a client would upload them


def shared_faces_dir() -> Path:
    return Path(os.environ.get("FACE_SHARED_FACES", REPO.parent / "shared" / "faces"))


def shared_photos(limit: int | None = None) -> list[Photo]:
    """The photos of manifest.csv, in manifest order."""
    root = shared_faces_dir()
    with (root / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [Photo(r["path"], r["identity"], (root / r["path"]).read_bytes()) for r in rows]


def face_crops(
    photos: list[Photo], detector: Any, size: int = 250, margin: float = 0.6
) -> list[Photo]:
    """Square JPEG crops around each photo's most confident face, `margin` face widths each
    side, resized to `size` pixels; photos (or crops) without a face are left out."""
    crops = []
    for photo in photos:
        image = decode(photo.data)
        faces = detector.detect(image)
        if not faces:
            continue
        x1, y1, x2, y2 = faces[0].box
        side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        box = (
            round(cx - side / 2),
            round(cy - side / 2),
            round(cx + side / 2),
            round(cy + side / 2),
        )
        crop = Image.fromarray(image).crop(box).resize((size, size), Image.Resampling.BILINEAR)
        data = jpeg(crop)
        if detector.detect(decode(data)):  # a probe without a face would count as an error
            crops.append(Photo(photo.path, photo.identity, data))
    return crops


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def repeat_to(photos: list[Photo], count: int) -> list[Photo]:
    """`count` photos, cycling through `photos`."""
    if not photos:
        raise ValueError("no photos to repeat")
    return [photos[i % len(photos)] for i in range(count)]


def load_photos(crop: int, limit: int | None, detector: Any) -> list[Photo]:
    """The shared photos as they are (crop=0) or as `crop` px face crops."""
    photos = shared_photos(limit)
    return face_crops(photos, detector, crop) if crop else photos

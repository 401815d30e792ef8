"""The benchmark photos as upload bytes, as 250 px face crops, and as aligned faces."""

from __future__ import annotations

import csv
import io
import os
import sys
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


class NoPhotos(SystemExit):
    """The benchmarks have no photos to run on: a message for the user, not a traceback."""


def shared_photos(limit: int | None = None) -> list[Photo]:
    """The benchmark photos: those of `manifest.csv` (columns path, identity) in its order,
    or, for a folder without one, every photo of a folder laid out as `python -m app import`
    takes it (DIR/<name>/*.jpg), folder by folder. FACE_SHARED_FACES names the folder; the
    default, ../shared/faces, is this project's own set, which a clone elsewhere lacks."""
    root = shared_faces_dir()
    rows = _listed(root)
    if not rows:
        raise NoPhotos(
            f"no benchmark photos in {root}: set FACE_SHARED_FACES to a folder of face photos, "
            "one sub-folder per person (DIR/<name>/*.jpg, as `python -m app import` takes "
            "them), or with a manifest.csv (columns path, identity)"
        )
    return [Photo(path, identity, (root / path).read_bytes()) for path, identity in rows[:limit]]


def _listed(root: Path) -> list[tuple[str, str]]:
    """(path under root, identity) of every photo in `root`."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with manifest.open() as handle:
            try:
                return [(r["path"], r["identity"]) for r in csv.DictReader(handle)]
            except KeyError as missing:
                raise NoPhotos(f"{manifest} has no column {missing}") from None
    if not root.is_dir():
        return []
    from app.commands.import_files import scan_directory

    try:
        albums = scan_directory(root)
    except OSError as error:
        raise NoPhotos(f"cannot list the benchmark photos in {root}: {error}") from None
    rows = []
    for album in albums:
        if album.problem is not None:
            print(f"skipped {album.folder}: {album.problem[1]}", file=sys.stderr)
        # The scan keeps broken links, FIFOs and devices, for the import's report; reading
        # a FIFO would wait forever.
        files = [path for path in album.files if path.is_file()]
        rows += [(path.relative_to(root).as_posix(), album.name) for path in files]
    return rows


def face_crops(
    photos: list[Photo], detector: Any, size: int = 250, margin: float = 0.6
) -> list[Photo]:
    """Square JPEG crops around each photo's most confident face, `margin` face widths each
    side, resized to `size` pixels; photos (or crops) without a face are left out."""
    crops = []
    for photo in photos:
        try:
            image = decode(photo.data)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            print(f"skipped {photo.path}: {error}", file=sys.stderr)
            continue
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
    if not crop:
        return photos
    crops = face_crops(photos, detector, crop)
    if not crops:
        raise NoPhotos(f"no face found in any of the {len(photos)} benchmark photos")
    return crops

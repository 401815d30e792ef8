"""Tests for refusing JPEGs whose scan data ends before their declared size."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import errors
from app.pipeline.image_io import decode_image
from app.pipeline.jpeg_integrity import _ends_in_grey

LIMIT = 40_000_000
_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive


def _frame_header(data: bytes) -> int:
    """Offset of the SOF segment, walking the segments from SOI."""
    offset = 2
    while data[offset + 1] not in _FRAMES:
        offset += 2 + struct.unpack(">H", data[offset + 2 : offset + 4])[0]
    return offset


def _declared_size(data: bytes) -> tuple[int, int]:
    offset = _frame_header(data)
    height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
    return width, height


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its header patched to claim `width` x `height`."""
    offset = _frame_header(data)
    return data[: offset + 5] + struct.pack(">HH", height, width) + data[offset + 9 :]


def _save(image: Image.Image, path: Path, **params: object) -> bytes:
    image.save(path, format="JPEG", **params)
    return path.read_bytes()


@pytest.fixture
def photo(package_images: Path) -> Image.Image:
    with Image.open(package_images / "yaoming.jpg") as image:
        return image.convert("RGB")


ENCODINGS = {
    "baseline": {"quality": 90},
    "progressive": {"quality": 90, "progressive": True},
    # One restart interval a row of blocks, as cameras write them: a taller header then
    # asks for more whole intervals than the data holds.
    "restart-every-row": {"quality": 90, "restart_marker_rows": 1},
    "restart-every-7-blocks": {"quality": 90, "restart_marker_blocks": 7},
    "4:4:4": {"quality": 90, "subsampling": 0},
}
PATCHES = {"twice-as-tall": (1, 2, 0, 0), "one-row-more": (1, 1, 0, 16), "wider": (1, 1, 16, 0)}


@pytest.mark.parametrize("patch", PATCHES.values(), ids=PATCHES.keys())
@pytest.mark.parametrize("params", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_jpeg_patched_bigger_than_its_data_is_refused(
    photo: Image.Image, tmp_path: Path, params: dict[str, object], patch: tuple[int, ...]
) -> None:
    data = _save(photo, tmp_path / "photo.jpg", **params)
    width, height = _declared_size(data)
    width_factor, height_factor, extra_width, extra_height = patch
    patched = _with_size(
        data, width * width_factor + extra_width, height * height_factor + extra_height
    )
    with pytest.raises(errors.InvalidImage, match="ends before"):
        decode_image(patched, LIMIT)


def test_the_check_sees_the_stored_corner_not_the_rotated_one(
    photo: Image.Image, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: shown turned 90 degrees clockwise
    data = _save(photo, tmp_path / "rotated.jpg", quality=90, exif=exif)
    width, height = _declared_size(data)
    with pytest.raises(errors.InvalidImage, match="ends before"):
        decode_image(_with_size(data, width, height * 2), LIMIT)


def test_the_package_photos_shipped_as_jpeg_decode(package_images: Path) -> None:
    for path in sorted(package_images.glob("*.jpg")):
        image = decode_image(path.read_bytes(), LIMIT)
        assert image.ndim == 3 and image.shape[2] == 3, path.name


def test_every_shared_jpeg_decodes(shared_faces: Path) -> None:
    # Some of them carry restart markers, as many cameras write them.
    paths = [p for p in sorted(shared_faces.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg")]
    assert len(paths) > 50
    for path in paths:
        assert decode_image(path.read_bytes(), LIMIT).shape[2] == 3, path.name


@pytest.mark.parametrize("params", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_complete_jpeg_ending_in_mid_grey_is_kept(
    photo: Image.Image, tmp_path: Path, params: dict[str, object]
) -> None:
    # A photo letterboxed with a mid-grey bar looks, at its last pixel, like one whose data
    # ran out; the second look must tell them apart.
    width, height = photo.size
    boxed = Image.new("RGB", (width, height + 40), (128, 128, 128))
    boxed.paste(photo, (0, 0))
    data = _save(boxed, tmp_path / "boxed.jpg", **params)
    with Image.open(tmp_path / "boxed.jpg") as stored:
        stored.load()
        assert _ends_in_grey(stored)
    decoded = decode_image(data, LIMIT)
    assert decoded.shape == (height + 40, width, 3)
    assert np.abs(decoded[-8:].astype(int) - 128).max() <= 1
    with Image.open(io.BytesIO(data)) as reference:
        np.testing.assert_array_equal(decoded, np.asarray(reference.convert("RGB")))


def _grey_boxed(photo: Image.Image) -> Image.Image:
    width, height = photo.size
    boxed = Image.new("RGB", (width, height + 40), (128, 128, 128))
    boxed.paste(photo, (0, 0))
    return boxed


def test_fill_bytes_before_the_end_marker_are_no_truncation(
    photo: Image.Image, tmp_path: Path
) -> None:
    """T.81 allows 0xFF fill before any marker: the probe's junk landed after one, read as
    a marker, and a valid photo ending in grey was refused."""
    data = _save(_grey_boxed(photo), tmp_path / "boxed.jpg", quality=90)
    assert data.endswith(b"\xff\xd9")
    for fill in (1, 2):
        filled = data[:-2] + b"\xff" * fill + b"\xff\xd9"
        assert decode_image(filled, LIMIT).shape[0] == photo.size[1] + 40


def test_a_cut_jpeg_with_a_second_end_marker_is_refused(photo: Image.Image, tmp_path: Path) -> None:
    """The junk went before the last end marker, after the first, where nothing reads it."""
    data = _save(photo, tmp_path / "photo.jpg", quality=90)
    cut = data[: len(data) * 2 // 3] + b"\xff\xd9" + b"\x00" * 4 + b"\xff\xd9"
    with pytest.raises(errors.InvalidImage, match="ends before"):
        decode_image(cut, LIMIT)


def test_a_cmyk_jpeg_cut_or_patched_is_refused_and_a_whole_one_kept(
    photo: Image.Image, tmp_path: Path
) -> None:
    data = _save(photo.convert("CMYK"), tmp_path / "cmyk.jpg", quality=90)
    assert decode_image(data, LIMIT).shape[2] == 3
    width, height = _declared_size(data)
    with pytest.raises(errors.InvalidImage, match="ends before"):
        decode_image(_with_size(data, width, height * 2), LIMIT)
    with pytest.raises(errors.InvalidImage, match="ends before"):
        decode_image(data[: len(data) * 2 // 3] + b"\xff\xd9", LIMIT)
    boxed = _save(_grey_boxed(photo).convert("CMYK"), tmp_path / "boxed.jpg", quality=90)
    assert decode_image(boxed, LIMIT).shape[0] == photo.size[1] + 40

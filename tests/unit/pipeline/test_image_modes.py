"""Tests for bit depths: deep greyscale is scaled by the depth its file declares."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import errors
from app.pipeline.image_io import decode_image

LIMIT = 40_000_000


@pytest.fixture
def grey_photo(package_images: Path) -> np.ndarray:
    with Image.open(package_images / "yaoming.jpg") as image:
        return np.asarray(image.convert("L"))


def _twelve_bit_tiff(values: np.ndarray) -> bytes:
    """An uncompressed 12-bit greyscale TIFF (Pillow reads these but cannot write them)."""
    height, width = values.shape
    padded = np.pad(values.astype(np.uint16), ((0, 0), (0, width % 2)))
    first, second = padded[:, 0::2], padded[:, 1::2]
    # Two 12-bit samples in three bytes, most significant bits first.
    triples = np.stack([first >> 4, ((first & 15) << 4) | (second >> 8), second & 255], axis=2)
    pixels = triples.astype(np.uint8).reshape(height, -1)[:, : (width * 12 + 7) // 8].tobytes()
    pixels_at = 8 + 2 + 12 * 9 + 4
    entries = [
        (256, 3, width),
        (257, 3, height),
        (258, 3, 12),  # BitsPerSample
        (259, 3, 1),  # no compression
        (262, 3, 1),  # black is zero
        (273, 4, pixels_at),
        (277, 3, 1),
        (278, 3, height),
        (279, 4, len(pixels)),
    ]
    directory = struct.pack("<H", len(entries))
    directory += b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"\x00" * 4 + pixels


def test_a_32_bit_tiff_of_8_bit_values_is_refused_not_read_as_black(
    grey_photo: np.ndarray, tmp_path: Path
) -> None:
    # Its values look like an 8-bit photo and like a very dark 16-bit one: nothing in the
    # file says which, so it is refused as the README says, not guessed.
    path = tmp_path / "photo-32bit.tiff"
    Image.fromarray(grey_photo).convert("I").save(path, format="TIFF")
    with Image.open(path) as stored:
        assert stored.mode == "I"
        assert int(np.asarray(stored).max()) <= 255
    with pytest.raises(errors.UnsupportedMediaType, match="32-bit") as refused:
        decode_image(path.read_bytes(), LIMIT)
    assert refused.value.details == {"mode": "I"}


def test_a_32_bit_tiff_of_16_bit_values_is_refused_too(
    grey_photo: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "photo-32bit-wide.tiff"
    Image.fromarray(grey_photo.astype(np.int32) * 257, mode="I").save(path, format="TIFF")
    with pytest.raises(errors.UnsupportedMediaType, match="32-bit"):
        decode_image(path.read_bytes(), LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_a_16_bit_photo_reads_as_its_8_bit_original(
    grey_photo: np.ndarray, tmp_path: Path, fmt: str, mode: str
) -> None:
    wide = (grey_photo.astype(np.uint16) * 257).astype(">u2" if mode == "I;16B" else "<u2")
    path = tmp_path / f"photo-16bit.{fmt.lower()}"
    Image.frombytes(mode, grey_photo.shape[::-1], wide.tobytes()).save(path, format=fmt)
    decoded = decode_image(path.read_bytes(), LIMIT)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], grey_photo)


def test_a_12_bit_tiff_is_scaled_by_its_declared_depth(
    grey_photo: np.ndarray, tmp_path: Path
) -> None:
    twelve = np.rint(grey_photo.astype(np.float64) * 4095 / 255).astype(np.uint16)
    path = tmp_path / "photo-12bit.tiff"
    path.write_bytes(_twelve_bit_tiff(twelve))
    with Image.open(path) as stored:  # Pillow's 16-bit mode, holding 0..4095
        assert stored.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(stored), twelve)
    decoded = decode_image(path.read_bytes(), LIMIT)
    np.testing.assert_array_equal(decoded[:, :, 0], grey_photo)


def _rgb_tiff_32(pixels: np.ndarray, sample_format: int) -> bytes:
    """An uncompressed RGB TIFF of 32 bits a sample (1: unsigned, 3: floating point), a
    layout Pillow does not open."""
    height, width, _ = pixels.shape
    data = pixels.astype("<f4" if sample_format == 3 else "<u4").tobytes()
    entries = 11
    extra_at = 8 + 2 + 12 * entries + 4  # three shorts each for BitsPerSample, SampleFormat
    pixels_at = extra_at + 12
    fields = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 3, extra_at),  # BitsPerSample: 32, 32, 32
        (259, 3, 1, 1),
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, pixels_at),
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 3, 1, height),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),  # chunky
        (339, 3, 3, extra_at + 6),  # SampleFormat
    ]
    directory = struct.pack("<H", entries) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in fields
    )
    extra = struct.pack("<3H", 32, 32, 32) + struct.pack("<3H", *[sample_format] * 3)
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"\x00" * 4 + extra + data


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the damaged copy
@pytest.mark.parametrize("sample_format", [1, 3], ids=["uint32", "float32"])
def test_a_32_bit_colour_tiff_is_unsupported_not_corrupt(
    grey_photo: np.ndarray, sample_format: int
) -> None:
    """Pillow cannot open it, and the sniffed TIFF header got 422 "corrupt TIFF image
    header": a client was told a valid file was broken."""
    colour = np.repeat(grey_photo[:64, :64, None], 3, axis=2) / 255.0
    with pytest.raises(errors.UnsupportedMediaType, match="TIFF with a pixel layout"):
        decode_image(_rgb_tiff_32(colour, sample_format), LIMIT)
    damaged = _rgb_tiff_32(colour, sample_format)[:10] + b"\x00" * 40
    with pytest.raises(errors.InvalidImage, match="corrupt TIFF"):
        decode_image(damaged, LIMIT)

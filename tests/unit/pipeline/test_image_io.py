"""Tests for upload decoding, limits, colour modes, EXIF and crop encoding."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import errors
from app.pipeline.image_io import (
    check_upload_size,
    decode_image,
    decode_png,
    downscale,
    encode_png,
    header_pixels,
)

LIMIT = 40_000_000


def _gradient(width: int = 48, height: int = 32) -> np.ndarray:
    """A smooth RGB test card; smooth so lossy codecs stay close."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    red = np.broadcast_to(x, (height, width))
    green = np.broadcast_to(y, (height, width))
    blue = np.full((height, width), 90.0)
    return np.stack([red, green, blue], axis=2).round().astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A 1-bit PNG that claims `width` x `height` but carries almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous


# --- limits and bad input -----------------------------------------------------------


def test_upload_size_limit() -> None:
    check_upload_size(b"x" * 10, max_bytes=10)
    with pytest.raises(errors.PayloadTooLarge, match="11 bytes"):
        check_upload_size(b"x" * 11, max_bytes=10)


def test_empty_file_is_invalid() -> None:
    with pytest.raises(errors.InvalidImage, match="empty file"):
        decode_image(b"", LIMIT)


def test_text_is_not_an_image() -> None:
    with pytest.raises(errors.UnsupportedMediaType):
        decode_image(b"name,identity\nalice,1\n" * 20, LIMIT)


def test_unaccepted_format_is_refused() -> None:
    ppm = _encode(Image.fromarray(_gradient()), "PPM")
    with pytest.raises(errors.UnsupportedMediaType):
        decode_image(ppm, LIMIT)


def test_truncated_jpeg_is_invalid(package_images: Path) -> None:
    data = (package_images / "yaoming.jpg").read_bytes()
    with pytest.raises(errors.InvalidImage, match="JPEG"):
        decode_image(data[: len(data) // 2], LIMIT)


def test_jpeg_with_broken_header_is_invalid_not_unsupported(package_images: Path) -> None:
    data = (package_images / "yaoming.jpg").read_bytes()
    with pytest.raises(errors.InvalidImage):
        decode_image(data[:40], LIMIT)


def test_pixel_bomb_is_refused_from_the_header() -> None:
    bomb = _png_header_only(7_000, 7_000)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(errors.ImageTooLarge, match="7000x7000"):
        decode_image(bomb, LIMIT)
    assert time.perf_counter() - started < 0.5


def test_header_pixels_reads_the_size_without_decoding(package_images: Path) -> None:
    # The pixel budget counts an upload by its header, before any decoding.
    assert header_pixels((package_images / "yaoming.jpg").read_bytes()) == 233 * 287
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's, as the header is read
        assert header_pixels(_png_header_only(12_000, 12_000)) == 144_000_000
    assert header_pixels(b"not an image") == 0
    assert header_pixels(b"") == 0


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["pillow-warning", "pillow-error"])
def test_pillow_bomb_guard_becomes_image_too_large(side: int) -> None:
    # Our own limit is the default, below Pillow's, so Pillow's guard fires first.
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(errors.ImageTooLarge) as refused:
            decode_image(_png_header_only(side, side), max_pixels=LIMIT)
    assert limit_before == Image.MAX_IMAGE_PIXELS
    # Reported against our limit, not in Pillow's words about its own.
    assert refused.value.message == f"image is {side * side} pixels; the limit is {LIMIT}"
    assert refused.value.details == {"pixels": side * side, "limit": LIMIT}


def test_a_limit_above_pillows_lets_its_warning_pass_and_names_its_hard_limit() -> None:
    # 100M pixels: past Pillow's 89.5M warning, within a FACE_MAX_IMAGE_PIXELS of 200M. The
    # header passes (this image holds no real pixel data, so it then fails to decode).
    with pytest.raises(errors.InvalidImage):
        decode_image(_png_header_only(10_000, 10_000), max_pixels=200_000_000)
    # 400M: past twice Pillow's limit, which it refuses to open whatever ours says.
    with pytest.raises(errors.ImageTooLarge, match="the image library decodes at most"):
        decode_image(_png_header_only(20_000, 20_000), max_pixels=10**12)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, b"GIF89a" + b"\xff" * 30, b"BM" + b"\x01" * 60],
    ids=["png", "gif", "bmp"],
)
def test_garbage_after_a_signature_is_a_domain_error(data: bytes) -> None:
    with pytest.raises(errors.FaceServiceError):
        decode_image(data, LIMIT)


# --- formats and colour modes --------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [("JPEG", 6.0), ("PNG", 0.0), ("WEBP", 6.0), ("BMP", 0.0), ("TIFF", 0.0)],
)
def test_common_formats_decode_to_rgb(fmt: str, tolerance: float) -> None:
    original = _gradient()
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    decoded = decode_image(_encode(Image.fromarray(original), fmt, **params), LIMIT)
    _assert_rgb(decoded, 32, 48)
    assert np.abs(decoded.astype(float) - original).mean() <= tolerance


def test_real_jpeg(package_images: Path) -> None:
    image = decode_image((package_images / "yaoming.jpg").read_bytes(), LIMIT)
    _assert_rgb(image, 287, 233)
    assert image.flags.writeable


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = _gradient()[:, :, 0]
    decoded = decode_image(_encode(Image.fromarray(gray, "L"), "PNG"), LIMIT)
    _assert_rgb(decoded, 32, 48)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], gray)


def test_transparency_is_composited_on_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (200, 10, 10, 255)  # opaque red on the left
    rgba[:, 4:] = (0, 0, 0, 0)  # fully transparent black on the right
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMIT)
    assert tuple(decoded[0, 0]) == (200, 10, 10)
    assert tuple(decoded[0, 7]) == (255, 255, 255)


def test_palette_gif_decodes() -> None:
    palette = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE)
    decoded = decode_image(_encode(palette, "GIF"), LIMIT)
    _assert_rgb(decoded, 32, 48)
    assert np.abs(decoded.astype(float) - _gradient()).mean() < 8


def test_rgba_photo_from_shared_set(shared_faces: Path) -> None:
    path = shared_faces / "face_recognition" / "alex-lacamoire.png"
    with Image.open(path) as original:
        assert original.mode == "RGBA"
    _assert_rgb(decode_image(path.read_bytes(), LIMIT), 394, 424)


def test_cmyk_jpeg_keeps_its_colours() -> None:
    colour = (200, 120, 40)
    solid = Image.new("RGB", (16, 16), colour).convert("CMYK")
    decoded = decode_image(_encode(solid, "JPEG", quality=95), LIMIT)
    _assert_rgb(decoded, 16, 16)
    assert np.abs(decoded.reshape(-1, 3).mean(axis=0) - colour).max() < 6


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    wide = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(wide), "PNG")
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode.startswith("I")
    decoded = decode_image(data, LIMIT)
    _assert_rgb(decoded, 1, 4)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 64, 128, 255])


def test_sixteen_bit_scaling_matches_rounding_in_floats() -> None:
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    decoded = decode_image(_encode(Image.fromarray(every), "PNG"), LIMIT)[:, :, 0]
    expected = np.clip(np.rint(every.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded, expected)


def test_32_bit_integer_images_are_unsupported_not_blank() -> None:
    wide = np.array([[0, 2**20, 2**30]], dtype=np.int32)
    with pytest.raises(errors.UnsupportedMediaType, match="32-bit"):
        decode_image(_encode(Image.fromarray(wide, mode="I"), "TIFF"), LIMIT)


def test_float_images_in_0_to_1_are_scaled() -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    decoded = decode_image(_encode(Image.fromarray(values, mode="F"), "TIFF"), LIMIT)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 128, 255])


def test_a_damaged_exif_block_counts_as_no_orientation() -> None:
    # A PNG eXIf chunk that is not TIFF data: Pillow's getexif() raises on it.
    stored = _gradient()
    clean = _encode(Image.fromarray(stored), "PNG")
    iend = clean.rindex(b"IEND") - 4
    body = b"\x8b\xe2XLX garbage, not a TIFF header"
    crc = zlib.crc32(b"eXIf" + body) & 0xFFFFFFFF
    damaged = (
        clean[:iend]
        + struct.pack(">I", len(body))
        + b"eXIf"
        + body
        + struct.pack(">I", crc)
        + clean[iend:]
    )
    np.testing.assert_array_equal(decode_image(damaged, LIMIT), stored)


def test_exif_orientation_is_applied() -> None:
    # Stored 40 wide x 20 tall: red left half, blue right half. Orientation 6 means
    # "rotate 90 degrees clockwise to display", which moves the left half to the top.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, LIMIT)
    _assert_rgb(decoded, 40, 20)
    top, bottom = decoded[5, 10].astype(int), decoded[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


# --- stored crops and downscaling ----------------------------------------------------


def test_png_round_trip_is_lossless() -> None:
    crop = _gradient(24, 24)
    np.testing.assert_array_equal(decode_png(encode_png(crop)), crop)


def test_encode_png_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="H x W x 3"):
        encode_png(np.zeros((4, 4), dtype=np.uint8))


def test_decode_png_rejects_garbage() -> None:
    with pytest.raises(errors.InvalidImage):
        decode_png(b"not a png")


def test_downscale_leaves_small_images_alone() -> None:
    image = _gradient()
    same, scale = downscale(image, max_side=48)
    assert same is image
    assert scale == 1.0


def test_downscale_shrinks_the_longest_side() -> None:
    image = np.zeros((500, 1000, 3), dtype=np.uint8)
    small, scale = downscale(image, max_side=100)
    assert small.shape == (50, 100, 3)
    assert small.dtype == np.uint8
    assert scale == pytest.approx(0.1)


# The high-water mark of this process's own memory (ru_maxrss would start at the
# parent's, which a fork hands on).
_PEAK_SCRIPT = """
import sys
from app.pipeline.image_io import decode_image
def peak():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
data = open(sys.argv[1], "rb").read()
before = peak()
image = decode_image(data, 40_000_000)
print(peak() - before)
"""


def test_decoding_an_rgb_image_makes_no_extra_copy(tmp_path: Path) -> None:
    """A 105 KB PNG can declare 36M pixels: each copy of them is 108 MB. convert("RGB")
    copied even an RGB image, and the peak was about 4 copies."""
    import subprocess
    import sys

    from tests.conftest import REPO

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((4000, 4000, 3), np.uint8)).save(path, format="PNG")
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    pixels_bytes = 4000 * 4000 * 3
    # The decoded image, the bytes NumPy reads, the array: 3 copies and the decoder's
    # buffers (about 3.4); with the extra convert("RGB") it was about 4.7.
    assert int(done.stdout) < 4 * pixels_bytes

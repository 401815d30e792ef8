"""Decode uploads into RGB arrays under size limits, and encode stored face crops."""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app import errors
from app.pipeline.image_modes import to_rgb_array
from app.pipeline.jpeg_integrity import check_scan_complete
from app.pipeline.types import ImageArray

# Formats with a small, well-fuzzed decoder. Pillow can open more (EPS would even run
# Ghostscript), so anything else is refused as an unsupported media type. "JPEG" also
# opens multi-picture (MPO) files straight from phone cameras.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

# Leading bytes of the accepted formats, to tell "not an image" from "a broken one".
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

log = logging.getLogger(__name__)


def check_upload_size(data: bytes, max_bytes: int) -> None:
    """Refuse an upload larger than `max_bytes`."""
    if len(data) > max_bytes:
        raise errors.PayloadTooLarge(
            f"file is {len(data)} bytes; the limit is {max_bytes} bytes",
            details={"size": len(data), "limit": max_bytes},
        )


def header_pixels(data: bytes) -> int:
    """Width x height as the image header states it, without decoding; 0 when the header
    cannot be read (decode_image then says why).

    It runs on the event loop, beside decode_image's threads, so it leaves the warning
    filters alone (catch_warnings swaps them process-wide). Past Pillow's own limit the
    header still warns or raises: such images are refused before decoding anyway."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            width, height = image.size
    except Exception:
        return 0
    return int(width * height)


def decode_image(data: bytes, max_pixels: int) -> ImageArray:
    """Decode an uploaded image into an H x W x 3 uint8 RGB array, upright per its EXIF."""
    if not data:
        raise errors.InvalidImage("empty file")
    # Pillow warns (and past twice its limit, raises) about decompression bombs while
    # reading the header; promote the warning so it cannot slip past as a log line.
    # Scoped here rather than set at import; the filter list is process-wide, but a
    # racing thread can at worst leave this one harmless "error" filter in place.
    with warnings.catch_warnings():
        # Unless FACE_MAX_IMAGE_PIXELS is above Pillow's own limit (89.5M pixels): then the
        # warning is Pillow's opinion of images ours allows, and our check follows anyway.
        strict = max_pixels <= (Image.MAX_IMAGE_PIXELS or 0)
        warnings.simplefilter("error" if strict else "ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(exc, max_pixels) from exc
        except UnidentifiedImageError as exc:
            sniffed = _sniff_format(data)
            if sniffed == "TIFF" and _tiff_mode_unknown(data):
                raise errors.UnsupportedMediaType(
                    "TIFF with a pixel layout that cannot be read (such as 32-bit integer or "
                    "floating-point colour); send 8 or 16 bits per channel"
                ) from exc
            if sniffed is not None:
                raise errors.InvalidImage(f"corrupt {sniffed} image header") from exc
            raise errors.UnsupportedMediaType(
                f"not a supported image; accepted formats: {', '.join(ACCEPTED_FORMATS)}"
            ) from exc
        except Exception as exc:  # a known header that Pillow fails to parse
            raise errors.InvalidImage(f"unreadable image header: {exc}") from exc
        with image:
            _check_pixels(image, max_pixels)
            try:
                image.load()
                check_scan_complete(data, image)
                _exif_upright(image)
                return to_rgb_array(image)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _too_many_pixels(exc, max_pixels) from exc
            except errors.FaceServiceError:
                raise
            # Corrupt files surface as OSError, SyntaxError, ValueError, struct.error and
            # more depending on the plugin; all of them mean the same thing to a client.
            except Exception as exc:
                raise errors.InvalidImage(
                    f"corrupt or truncated {image.format} image: {exc}"
                ) from exc


def _tiff_mode_unknown(data: bytes) -> bool:
    """Whether a TIFF that Pillow would not open has a sound header, with a sample format
    or layout Pillow does not decode, rather than a corrupt one."""
    from PIL import TiffImagePlugin

    try:
        TiffImagePlugin.TiffImageFile(io.BytesIO(data)).close()
    except SyntaxError as exc:
        return str(exc) == "unknown pixel mode"
    except Exception:
        return False
    return False


def _exif_upright(image: Image.Image) -> None:
    """Turn `image` upright per its EXIF orientation. A damaged EXIF block (the pixels
    decode) counts as no orientation, as viewers treat it."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # Pillow raises whatever its TIFF parser meets
        log.info("ignoring unreadable EXIF in a %s upload: %s", image.format, type(exc).__name__)


def _sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _too_many_pixels(exc: Exception, max_pixels: int) -> errors.ImageTooLarge:
    """Pillow's own bomb check fired (far past our limit): report it against ours."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found is None:
        return errors.ImageTooLarge(
            f"image has more pixels than the limit of {max_pixels}",
            details={"limit": max_pixels},
        )
    pixels = int(found.group(1))
    if pixels <= max_pixels:  # Pillow refuses past twice its limit, whatever ours is
        library = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return errors.ImageTooLarge(
            f"image is {pixels} pixels; the image library decodes at most {library}",
            details={"pixels": pixels, "limit": library},
        )
    return errors.ImageTooLarge(
        f"image is {pixels} pixels; the limit is {max_pixels}",
        details={"pixels": pixels, "limit": max_pixels},
    )


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    # Runs on the header's size, before any pixel data is decoded.
    width, height = image.size
    if width * height > max_pixels:
        raise errors.ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            details={"width": width, "height": height, "limit": max_pixels},
        )


def encode_png(image: ImageArray) -> bytes:
    """Losslessly encode an RGB face crop for storage."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {image.shape} {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> ImageArray:
    """Decode a stored face crop written by `encode_png`."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8, order="C")
    except Exception as exc:
        raise errors.InvalidImage(f"stored face crop is not a readable PNG: {exc}") from exc


def downscale(image: ImageArray, max_side: int) -> tuple[ImageArray, float]:
    """Shrink so the longest side is at most `max_side`; returns (image, scale <= 1)."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap lets Pillow pre-shrink by an integer factor first: much faster on
    # camera-sized photos and indistinguishable for detection.
    resized = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.array(resized, dtype=np.uint8, order="C"), scale

"""Convert a decoded image of any accepted mode and bit depth into an 8-bit RGB array."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app import errors
from app.pipeline.types import ImageArray

# Integer greyscale deeper than 8 bits: "I;16*" from 16-bit PNG and TIFF, "I" from 32-bit
# or signed TIFF (and from 16-bit PNG in Pillow before 11).
_DEEP_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT, _TIFF_SIGNED = 258, 339, 2
_WHITE = (255, 255, 255, 255)


def to_rgb_array(image: Image.Image) -> ImageArray:
    """A loaded image as an H x W x 3 uint8 RGB array; alpha is composited on white."""
    mode = image.mode
    if mode in _DEEP_GREY_MODES:
        return _deep_grey_to_rgb(image)
    if mode == "F":
        values = np.asarray(image)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            # Floating-point images in 0..1, the usual convention: Pillow would read 0..255.
            image = Image.fromarray(np.rint(values * 255.0).astype(np.uint8))
        else:
            image = image.convert("L")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if has_alpha:
        # Transparent cut-outs often hide arbitrary colour under alpha 0; composite on
        # white so the detector sees what a viewer sees.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        image = Image.alpha_composite(background, rgba)
    # convert("RGB") copies even an RGB image: a 36M-pixel upload (108 MB as RGB) peaked
    # at about 400 MB with it. np.array then copies the bytes NumPy reads the pixels from,
    # for a writable array (torch warns about read-only ones).
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.array(rgb, dtype=np.uint8, order="C")


def _deep_grey_to_rgb(image: Image.Image) -> ImageArray:
    bits = _declared_bits(image)
    if bits is None:
        # Pixel values cannot tell the depth: 0..255 in 32 bits is as likely an 8-bit
        # picture as a dark 16-bit one, and guessing from the range would stretch contrast.
        raise errors.UnsupportedMediaType(
            "32-bit and signed integer images are not supported; "
            "send unsigned 8 or 16 bits per channel",
            details={"mode": image.mode},
        )
    # Scale the declared range onto 8 bits; Pillow's own convert("L") would clip at 255.
    # In integers: float64 took 1 GB and 3.4 s for a 40M-pixel image. top is odd, so
    # x * 255 / top is never halfway between integers and this rounds as rint would.
    top = (1 << bits) - 1
    wide = np.asarray(image).astype(np.uint32)
    gray = ((wide * 255 + top // 2) // top).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _declared_bits(image: Image.Image) -> int | None:
    """Bits per sample the file declares for its integer greyscale, when they are unsigned
    and at most 16; None otherwise."""
    if image.format == "TIFF":
        # 12-bit TIFFs open as "I;16" holding 0..4095: scale by the tag, not by the mode.
        tags = image.tag_v2  # type: ignore[attr-defined]
        bits = _first(tags.get(_TIFF_BITS_PER_SAMPLE, 1))
        signed = _first(tags.get(_TIFF_SAMPLE_FORMAT, 1)) == _TIFF_SIGNED
        return bits if 8 < bits <= 16 and not signed else None
    if image.format == "PNG":  # PNG's only greyscale deeper than 8 bits is unsigned 16
        return 16
    return None if image.mode == "I" else 16


def _first(value: object) -> int:
    # Pillow gives a tuple for a tag with one value per sample, an int for a single value.
    item = value[0] if isinstance(value, tuple) and value else value
    return int(item) if isinstance(item, int) else 0

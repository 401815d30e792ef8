"""Refuse a JPEG whose scan data ends before its declared size, which libjpeg pads grey."""

from __future__ import annotations

import io

from PIL import Image, ImageChops

from app import errors

# libjpeg does not fail a scan that meets a marker (EOI, or a header patched to a bigger
# size than the data) before its last block: it warns, which Pillow ignores, and leaves the
# rest of the blocks at zero, which decodes to mid-grey (luma 128).
_GREY_LUMA = 128
_EOI, _SOS = b"\xff\xd9", b"\xff\xda"
_RESTARTS = tuple(bytes((0xFF, 0xD0 + n)) for n in range(8))
# Arithmetic coding reads past its data and expects zeros there: junk would change a
# complete image, so those (which browsers cannot show anyway) are not probed.
_ARITHMETIC_FRAMES = tuple(bytes((0xFF, m)) for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# Bits a Huffman decoder reads as non-zero coefficients; no 0xFF byte, so no marker.
_JUNK = bytes((0x5A, 0x96, 0x3C, 0xA5)) * 8


def check_scan_complete(data: bytes, image: Image.Image) -> None:
    """Refuse `image`, just decoded from `data`, if its scan data ran out before its
    last block. Run it before any EXIF rotation: it looks at the last block decoded."""
    if image.format != "JPEG" or not _ends_in_grey(image):
        return
    if _junk_changes_pixels(data, image):
        width, height = image.size
        raise errors.InvalidImage(
            f"corrupt or truncated JPEG image: its data ends before the {width}x{height} "
            "pixels its header declares",
            details={"width": width, "height": height},
        )


def _ends_in_grey(image: Image.Image) -> bool:
    """Whether the last pixel has the luma of a block with no data. It costs every JPEG a
    microsecond; the few complete ones that end so (2 of 696 variants of the shared photos)
    pay for one more decode."""
    width, height = image.size
    pixel = image.getpixel((width - 1, height - 1))
    if image.mode == "L":
        return pixel == _GREY_LUMA
    if image.mode == "RGB" and isinstance(pixel, tuple):
        red, green, blue = pixel[:3]
        # Colour is interpolated from the blocks around it, so only the luma is exact.
        return abs(0.299 * red + 0.587 * green + 0.114 * blue - _GREY_LUMA) <= 1.0
    if image.mode == "CMYK" and isinstance(pixel, tuple):
        # Adobe's CMYK (and YCCK) JPEGs store inverted ink: an empty block reads 127.
        return all(abs(ink - (_GREY_LUMA - 1)) <= 1 for ink in pixel)
    return False


def _junk_changes_pixels(data: bytes, image: Image.Image) -> bool:
    """Decode again with junk before the end marker. A complete scan never reads it; one
    that ran out decodes it where it would have left zeros, so the pixels change."""
    # The last scan ends at the first end marker after it (entropy-coded data holds none):
    # a file cut short may carry another one, and bytes after the first are never read.
    scan = data.rfind(_SOS)
    end = data.find(_EOI, scan) if scan >= 0 else -1
    if end < 0 or any(data.find(frame, 0, scan) >= 0 for frame in _ARITHMETIC_FRAMES):
        return False
    while data[end - 1] == 0xFF:  # fill bytes may precede a marker (T.81, B.1.1.2)
        end -= 1
    # With restart intervals, a scan that ran out waits for the next restart marker and
    # skips anything before it: so give it that marker, then the junk.
    restarts = sum(data.count(marker, scan, end) for marker in _RESTARTS)
    resume = _RESTARTS[restarts % 8] if restarts else b""
    probe = b"".join((data[:end], resume, _JUNK, data[end:]))
    try:
        with Image.open(io.BytesIO(probe), formats=("JPEG",)) as again:
            again.load()
            # One difference image, not two byte copies of a picture that may be 40 MP.
            return ImageChops.difference(again, image).getbbox() is not None
    except Exception:  # the probe itself is unreadable: no evidence against the image
        return False

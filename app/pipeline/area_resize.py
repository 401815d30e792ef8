"""MTCNN's area resizes of uint8 images, read from one integral image per batch."""

# MTCNN shrinks each image once per pyramid level and cuts each candidate box out and
# shrinks it to 24 or 48 px, all with `interpolate(mode="area")`: the mean of each output
# pixel's window of input pixels. Its CPU kernel reads every window pixel by pixel (each
# pyramid level reads the whole image again), and facenet-pytorch calls it once per box.
# That was a third of MTCNN's time on 250 px photos. An integral image makes every window
# sum four lookups, for all levels and all boxes in a few vectorised calls.
#
# The results are bit-identical to interpolate's CPU kernel on NCHW input: pixels are
# integers, so each window's sum is exact here (int32) and in interpolate's float32 sum
# while it stays below 2**24 (any window under 65,000 pixels), and both then divide it by
# the window's height and then its width. Larger windows (a photo over about 3,000 px
# shrunk to 12 px: never at the default FACE_DETECT_MAX_SIDE) get the exact mean here,
# which interpolate's float sum rounds. A 1x1 output, which MTCNN never asks for, is a
# mean to torch, and CUDA's NHWC kernel multiplies by 1/(kh*kw): both may differ in the
# last bit.

from __future__ import annotations

import torch
import torch.nn.functional as F


def _windows(
    start: torch.Tensor, stop: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (or columns) [first, end) that each of `size` outputs averages over, for spans
    [start, stop) of shape (K,): two (K, size) tensors, split as adaptive pooling splits."""
    length = (stop - start)[:, None]
    out = torch.arange(size, device=start.device)[None, :]
    first = start[:, None] + out * length // size
    end = start[:, None] - (-(out + 1) * length // size)  # a ceiling division
    return first, end


class AreaResizer:
    """`interpolate(images.float(), mode="area")` of whole images and of boxes cut from them,
    for one batch of uint8 images of shape (N, H, W, C).

    Results are float32 NCHW tensors in channels-last memory, which MTCNN's channels-last
    nets take as they are.
    """

    def __init__(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            found = f"{images.dtype} {tuple(images.shape)}"
            raise TypeError(f"expected uint8 images (N, H, W, C), got {found}")
        _, h, w, _ = images.shape
        dtype = torch.int32 if 255 * h * w < 2**31 else torch.int64
        # sums[n, y, x, c]: the sum of images[n, :y, :x, c].
        self.sums = F.pad(images.to(dtype), (0, 0, 1, 0, 1, 0)).cumsum_(2).cumsum_(1)
        self.height, self.width = h, w

    def resize(self, height: int, width: int) -> torch.Tensor:
        """Every image at (height, width): (N, C, height, width)."""
        zero = torch.zeros(1, dtype=torch.int64, device=self.sums.device)
        top, bottom = (v[0] for v in _windows(zero, zero + self.height, height))
        left, right = (v[0] for v in _windows(zero, zero + self.width, width))
        rows = self.sums.index_select(1, bottom) - self.sums.index_select(1, top)
        window_sums = rows.index_select(2, right) - rows.index_select(2, left)
        heights = (bottom - top).to(torch.float32).view(-1, 1, 1)
        widths = (right - left).to(torch.float32).view(-1, 1)
        return window_sums.to(torch.float32).div_(heights).div_(widths).permute(0, 3, 1, 2)

    def crops(
        self,
        image: torch.Tensor,
        top: torch.Tensor,
        bottom: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        size: int,
    ) -> torch.Tensor:
        """Boxes rows [top, bottom) and columns [left, right) of images `image` (int64
        tensors of shape (K,); non-empty boxes inside the image), each resized to
        (size, size): (K, C, size, size)."""
        _, rows, columns, channels = self.sums.shape
        first_row, end_row = _windows(top, bottom, size)
        first_col, end_col = _windows(left, right, size)
        # Row indices into sums viewed as (N * rows * columns, channels).
        start = (image * (rows * columns))[:, None]
        first = (start + first_row * columns)[:, :, None]
        end = (start + end_row * columns)[:, :, None]
        flat = self.sums.view(-1, channels)

        def corner(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
            return flat.index_select(0, (row + col[:, None, :]).view(-1))

        window_sums = (
            corner(end, end_col)
            - corner(first, end_col)
            - corner(end, first_col)
            + corner(first, first_col)
        ).view(len(image), size, size, channels)
        heights = (end_row - first_row).to(torch.float32)[:, :, None, None]
        widths = (end_col - first_col).to(torch.float32)[:, None, :, None]
        return window_sums.to(torch.float32).div_(heights).div_(widths).permute(0, 3, 1, 2)

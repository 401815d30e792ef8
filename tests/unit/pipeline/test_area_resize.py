"""Area resizes from an integral image against torch's own `interpolate(mode="area")`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.pipeline.area_resize import AreaResizer


def _images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = np.random.default_rng(seed)
    return torch.from_numpy(generator.integers(0, 256, (count, height, width, 3), dtype=np.uint8))


def _reference(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float().contiguous()


@pytest.mark.parametrize(
    ("height", "width", "sizes"),
    [
        (250, 250, [(94, 94), (67, 67), (48, 48), (34, 34), (24, 24), (17, 17), (12, 12)]),
        (123, 301, [(40, 98), (11, 29), (123, 301), (200, 500), (1, 5), (5, 1)]),
        (31, 7, [(12, 3), (30, 6), (31, 7)]),
    ],
)
def test_whole_images_are_bit_identical_to_interpolate(
    height: int, width: int, sizes: list[tuple[int, int]]
) -> None:
    images = _images(3, height, width)
    resizer = AreaResizer(images)
    for size in sizes:
        expected = F.interpolate(_reference(images), size=size, mode="area")
        got = resizer.resize(*size)
        assert got.shape == expected.shape
        assert torch.equal(got, expected), size


def test_boxes_are_bit_identical_to_interpolate_of_each_crop() -> None:
    images = _images(4, 120, 90, seed=1)
    generator = np.random.default_rng(2)
    count = 300
    top = generator.integers(0, 119, count)
    left = generator.integers(0, 89, count)
    bottom = np.minimum(120, top + generator.integers(1, 120, count))
    right = np.minimum(90, left + generator.integers(1, 90, count))
    image = generator.integers(0, 4, count)
    # Boxes touching every edge, one pixel, the whole image.
    top[:3], bottom[:3] = (0, 119, 0), (120, 120, 120)
    left[:3], right[:3] = (0, 89, 0), (90, 90, 90)
    reference = _reference(images)
    resizer = AreaResizer(images)
    spans = [torch.from_numpy(v).long() for v in (image, top, bottom, left, right)]
    for size in (24, 48):
        got = resizer.crops(*spans, size)
        expected = torch.cat(
            [
                F.interpolate(
                    reference[image[k], :, top[k] : bottom[k], left[k] : right[k]][None],
                    size=(size, size),
                    mode="area",
                )
                for k in range(count)
            ]
        )
        assert torch.equal(got, expected)


def test_results_are_channels_last_nchw() -> None:
    resizer = AreaResizer(_images(2, 40, 50))
    whole = resizer.resize(20, 25)
    assert whole.shape == (2, 3, 20, 25)
    assert whole.is_contiguous(memory_format=torch.channels_last)
    one = torch.zeros(1, dtype=torch.long)
    crop = resizer.crops(one, one, one + 10, one, one + 10, 24)
    assert crop.shape == (1, 3, 24, 24)
    assert crop.is_contiguous(memory_format=torch.channels_last)


def test_only_uint8_batches_are_accepted() -> None:
    with pytest.raises(TypeError, match="uint8"):
        AreaResizer(torch.zeros((1, 10, 10, 3)))
    with pytest.raises(TypeError, match="uint8"):
        AreaResizer(torch.zeros((10, 10, 3), dtype=torch.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_hosts_results() -> None:
    images = _images(3, 97, 131, seed=3)
    on_host, on_gpu = AreaResizer(images), AreaResizer(images.cuda())
    assert torch.equal(on_gpu.resize(40, 53).cpu(), on_host.resize(40, 53))
    boxes = ([0, 2, 1], [0, 10, 50], [97, 40, 51], [0, 5, 60], [131, 90, 61])
    spans = [torch.tensor(v) for v in boxes]  # images, tops, bottoms, lefts, rights
    got = on_gpu.crops(*(s.cuda() for s in spans), 24)
    assert got.is_cuda
    assert torch.equal(got.cpu(), on_host.crops(*spans, 24))

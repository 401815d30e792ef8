"""MTCNN's stages with integral-image resizes against facenet-pytorch's own MTCNN.detect."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from app.pipeline.detect import FaceDetector
from app.pipeline.mtcnn_stages import NO_FACE, Stages, detect_faces
from app.pipeline.types import ImageArray

ImageLoader = Callable[[Path], ImageArray]


@pytest.fixture(scope="module")
def stock() -> MTCNN:
    return MTCNN(keep_all=True, min_face_size=20, device="cpu").eval()


def _by_position(boxes: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Rows in one order by box position: O-net's probabilities often tie at 1.0, and the
    order of tied faces is not part of the result."""
    order = np.lexsort((boxes[:, 1], boxes[:, 0]))
    return [np.asarray(a, dtype=np.float32)[order] for a in (boxes, *others)]


def _assert_same_faces_as_mtcnn_detect(stock: MTCNN, image: ImageArray) -> None:
    # An HWC view of planar memory: stock MTCNN's P-net then gets NCHW levels, as ours does
    # for nets with NCHW weights. (From HWC memory it gets channels-last levels, which its
    # convolution rounds differently in the last bit.)
    planar = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).permute(1, 2, 0)
    boxes, probs, points = stock.detect(planar, landmarks=True)
    ((got_boxes, got_probs, got_points),) = detect_faces(stock, image)
    assert len(got_boxes) == len(boxes) > 0
    want = _by_position(np.asarray(boxes, dtype=np.float32), probs, points)
    for got, expected in zip(_by_position(got_boxes, got_probs, got_points), want, strict=True):
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("name", ["yaoming.jpg", "players.jpg", "gdp.jpg"])
def test_same_faces_as_mtcnn_detect_bit_for_bit(
    stock: MTCNN, package_images: Path, load_image: ImageLoader, name: str
) -> None:
    _assert_same_faces_as_mtcnn_detect(stock, load_image(package_images / name))


@pytest.mark.parametrize(("height", "width"), [(25, 2000), (2000, 25)])
def test_a_face_in_a_strip_is_found_bit_for_bit(
    stock: MTCNN, yaoming: ImageArray, height: int, width: int
) -> None:
    # One pyramid level fits the short side, where P-net's map is 3 windows across.
    side = min(height, width)
    face_width = round(side * yaoming.shape[1] / yaoming.shape[0])
    face = Image.fromarray(yaoming).resize((face_width, side), Image.Resampling.BILINEAR)
    image = np.full((height, width, 3), 110, dtype=np.uint8)
    image[height - side :, width - face.width :] = np.asarray(face)  # at the far end
    _assert_same_faces_as_mtcnn_detect(stock, image)


def test_batch_gives_each_image_its_own_faces_and_none_where_there_are_none(
    stock: MTCNN, package_images: Path, load_image: ImageLoader
) -> None:
    face = load_image(package_images / "yaoming.jpg")
    blank = np.full_like(face, 128)
    mirrored = np.ascontiguousarray(face[:, ::-1])
    results = detect_faces(stock, np.stack([face, blank, mirrored]))
    alone = [detect_faces(stock, image)[0] for image in (face, mirrored)]
    assert len(results) == 3
    assert results[1] == NO_FACE
    for got, expected in zip((results[0], results[2]), alone, strict=True):
        assert len(got[0]) == len(expected[0]) == 1
        for part in (0, 2):  # boxes and landmarks, within a batch's rounding
            np.testing.assert_allclose(got[part], expected[part], atol=1e-3)
    assert not np.allclose(results[0][0], results[2][0])  # two different places


def test_boxes_outside_the_image_get_no_crop_and_are_dropped(stock: MTCNN) -> None:
    image = np.zeros((1, 60, 80, 3), dtype=np.uint8)
    stages = Stages(stock, image)
    inside, right_of_it, partly_below = (
        [10.0, 10.0, 40.0, 40.0, 0.9],
        [200.0, 10.0, 260.0, 40.0, 0.8],
        [-5.0, 50.0, 30.0, 90.0, 0.7],
    )
    boxes = torch.tensor([inside, right_of_it, partly_below])
    crops, kept_boxes, kept_images = stages.crops(boxes, torch.zeros(3, dtype=torch.long), 24)
    assert crops.shape == (2, 3, 24, 24)
    assert kept_boxes[:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert kept_images.tolist() == [0, 0]


@pytest.mark.parametrize(("side", "min_face"), [(19, 20), (47, 47)])
def test_images_with_no_pyramid_level_have_no_faces(
    yaoming: ImageArray, side: int, min_face: int
) -> None:
    # Stock MTCNN fails on these. 47 * (12 / 47) rounds below 12, so a 47 px image has no
    # level for a 47 px minimum face, which FaceDetector (skipping images below the
    # minimum only) passed on.
    mtcnn = MTCNN(keep_all=True, min_face_size=min_face, device="cpu").eval()
    face = np.ascontiguousarray(yaoming[60 : 60 + side, 60 : 60 + side])
    assert detect_faces(mtcnn, np.stack([face, face[::-1]])) == [NO_FACE, NO_FACE]


def test_read_only_images_are_taken_without_a_warning(stock: MTCNN) -> None:
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detect_faces(stock, image) == [NO_FACE]


def test_flipped_views_are_taken_as_stock_mtcnn_takes_them(
    stock: MTCNN, package_images: Path, load_image: ImageLoader
) -> None:
    image = load_image(package_images / "yaoming.jpg")
    flipped = image[:, ::-1]  # negative strides, which torch refuses to wrap
    ((boxes, _, _),) = detect_faces(stock, flipped)
    ((expected, _, _),) = detect_faces(stock, np.ascontiguousarray(flipped))
    assert np.array_equal(boxes, expected) and len(boxes) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_finds_the_faces_the_host_finds(package_images: Path, load_image: ImageLoader) -> None:
    """The service's own set-up on each device: traced nets, padded batches on the GPU."""
    image = load_image(package_images / "players.jpg")
    on_host = FaceDetector(torch.device("cpu"))
    on_gpu = FaceDetector(torch.device("cuda"))
    item = on_host.prepare(image)
    assert item is not None
    ((host_boxes, _, host_points),) = on_host.run([item])
    ((gpu_boxes, _, gpu_points),) = on_gpu.run([item])
    assert len(gpu_boxes) == len(host_boxes) > 5
    got, want = _by_position(gpu_boxes, gpu_points), _by_position(host_boxes, host_points)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-2)

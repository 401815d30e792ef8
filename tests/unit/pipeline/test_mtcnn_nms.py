"""Per-image NMS: every image of an MTCNN batch keeps the boxes it would keep alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facenet_pytorch.models.utils.detect_face import nms_numpy
from torchvision.ops import batched_nms, nms

from app.pipeline.mtcnn_nms import per_image_nms, per_image_nms_numpy

# O-net's last-stage candidates for a batch of four face-api.js crops, as facenet-pytorch
# gave them (image 1 is sheldon4.png). Boxes 0 and 6 have equal scores; alone, NMS keeps
# box 6, and facenet-pytorch's batch-wide sort kept box 0: an 8.8 px taller face.
_BOXES = [
    [-36.41162872314453, -34.37969207763672, 125.48919677734375, 173.63006591796875],
    [-27.027103424072266, -38.65757751464844, 126.64541625976562, 159.8201141357422],
    [-2.836270332336426, -45.836891174316406, 136.13916015625, 140.80947875976562],
    [7.3816680908203125, -41.80091857910156, 143.25726318359375, 140.53146362304688],
    [-2.1146163940429688, -32.769630432128906, 143.2703399658203, 149.0035858154297],
    [3.7736635208129883, -40.84313201904297, 135.73953247070312, 139.32943725585938],
    [-38.284751892089844, -43.14398956298828, 125.36803436279297, 167.1136016845703],
    [20.13014793395996, -31.66761589050293, 155.51097106933594, 144.58152770996094],
    [14.167768478393555, -28.012575149536133, 144.320556640625, 147.0791015625],
    [-0.9983224868774414, -31.9628849029541, 152.5885009765625, 154.39913940429688],
]
_SCORES = [
    0.9999992847442627,
    0.9999991655349731,
    0.9999966621398926,
    0.9999957084655762,
    0.9996987581253052,
    0.999984622001648,
    0.9999992847442627,
    0.9997624754905701,
    0.999578058719635,
    0.9999128580093384,
]
_IMAGES = [1, 1, 3, 3, 0, 3, 1, 2, 2, 0]


def _alone_numpy(boxes: np.ndarray, scores: np.ndarray, images: np.ndarray, image: int) -> set[int]:
    members = np.flatnonzero(images == image)
    return {int(members[i]) for i in nms_numpy(boxes[members], scores[members], 0.7, "Min")}


def test_last_stage_keeps_what_each_image_keeps_alone() -> None:
    boxes = np.array(_BOXES, dtype=np.float32)
    scores = np.array(_SCORES, dtype=np.float32)
    images = np.array(_IMAGES)
    keep = per_image_nms_numpy(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(images), 0.7, "Min"
    ).tolist()
    for image in range(4):
        assert {i for i in keep if images[i] == image} == _alone_numpy(boxes, scores, images, image)
    assert 6 in keep and 0 not in keep  # sheldon4's box as it is found alone
    assert [scores[i] for i in keep] == sorted((scores[i] for i in keep), reverse=True)


def test_one_image_gives_facenet_pytorchs_own_result() -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 200, (40, 2)).astype(np.float32)
    boxes = np.hstack([corners, corners + rng.uniform(20, 80, (40, 2)).astype(np.float32)])
    scores = rng.uniform(0.5, 1.0, 40).astype(np.float32)
    zeros = torch.zeros(40, dtype=torch.int64)
    got = per_image_nms_numpy(torch.from_numpy(boxes), torch.from_numpy(scores), zeros, 0.7, "Min")
    assert got.tolist() == list(nms_numpy(boxes, scores, 0.7, "Min"))
    got_torch = per_image_nms(torch.from_numpy(boxes), torch.from_numpy(scores), zeros, 0.5)
    assert (
        got_torch.tolist()
        == batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), zeros, 0.5).tolist()
    )


def test_torch_stages_keep_what_each_image_keeps_alone() -> None:
    rng = np.random.default_rng(4)
    corners = torch.from_numpy(rng.uniform(0, 300, (90, 2)).astype(np.float32))
    boxes = torch.cat([corners, corners + torch.from_numpy(rng.uniform(12, 60, (90, 2)))], 1)
    boxes = boxes.float()
    scores = torch.from_numpy(rng.uniform(0.6, 1.0, 90).astype(np.float32))
    images = torch.from_numpy(rng.integers(0, 3, 90))
    keep = per_image_nms(boxes, scores, images, 0.5)
    for image in range(3):
        members = torch.nonzero(images == image).flatten()
        alone = members[nms(boxes[members], scores[members], 0.5)]
        assert {int(i) for i in keep if images[i] == image} == set(alone.tolist())
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])


def test_empty_input_is_harmless() -> None:
    empty = torch.empty((0, 4))
    assert per_image_nms(empty, torch.empty(0), torch.empty(0), 0.5).numel() == 0
    assert per_image_nms_numpy(empty, torch.empty(0), torch.empty(0), 0.7, "Min").numel() == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_boxes_keep_what_the_host_keeps() -> None:
    rng = np.random.default_rng(5)
    corners = torch.from_numpy(rng.uniform(0, 300, (200, 2)).astype(np.float32))
    boxes = torch.cat([corners, corners + torch.from_numpy(rng.uniform(12, 60, (200, 2)))], 1)
    scores = torch.from_numpy(rng.uniform(0.6, 1.0, 200).astype(np.float32))
    images = torch.from_numpy(rng.integers(0, 8, 200))
    on_host = per_image_nms(boxes.float(), scores, images, 0.5)
    on_gpu = per_image_nms(boxes.float().cuda(), scores.cuda(), images.cuda(), 0.5)
    assert on_gpu.is_cuda
    assert on_gpu.cpu().tolist() == on_host.tolist()

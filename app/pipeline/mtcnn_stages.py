"""MTCNN's three stages as facenet-pytorch 2.5.3 runs them, with faster resizes."""

# This follows facenet-pytorch's `detect_face` (MIT licence, (c) 2019 Timothy Esler; its
# notice is in LICENSE) step by step, with the same nets, thresholds and helpers, and so
# the same boxes, with four changes:
# - every area resize (pyramid levels, candidate boxes) is read from one integral image
#   (app/pipeline/area_resize.py), bit-identical, instead of one `interpolate` per level
#   and per box;
# - each image gets its own NMS (app/pipeline/mtcnn_nms.py), so batch partners never
#   change its boxes;
# - a candidate box that lies wholly outside the image is dropped; facenet-pytorch skipped
#   its crop but not the box, and then failed on the mismatch;
# - an image with no pyramid level has no faces; facenet-pytorch failed. That is a short
#   side below the minimum face m, or equal to it where 12 / m * m < 12 (m = 47, 94, ...).
# The result is what `MTCNN.detect(images, landmarks=True)` returns per image for
# keep_all=True and select_largest=False, as a list even for one image.

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import (
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    pad,
    rerec,
)

from app.pipeline.area_resize import AreaResizer
from app.pipeline.mtcnn_nms import per_image_nms, per_image_nms_numpy
from app.pipeline.mtcnn_output import RawDetection

NO_FACE: RawDetection = (None, (None,), None)  # as MTCNN.detect's (None, [None], None)


def _pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


class Stages:
    """One batch of images through MTCNN's nets."""

    def __init__(self, mtcnn: MTCNN, images: Any) -> None:
        if isinstance(images, np.ndarray) and not (
            images.flags.writeable and images.flags.c_contiguous
        ):
            # torch warns about read-only arrays (decoded images are) and refuses negative
            # strides (a flipped view); facenet-pytorch always copied.
            images = np.array(images)
        imgs = torch.as_tensor(images, device=mtcnn.device)
        if imgs.ndim == 3:
            imgs = imgs.unsqueeze(0)
        self.resizer = AreaResizer(imgs)
        self.mtcnn = mtcnn
        self.threshold = mtcnn.thresholds
        weight = next(mtcnn.pnet.parameters())
        self.dtype = weight.dtype
        # The resizes come channels-last, which the CPU's channels-last nets take as they
        # are (their results are the same for either layout). Nets with NCHW weights (on a
        # GPU) get NCHW. On CUDA this is not bit for bit what ran before: P-net used to get
        # channels-last levels from CUDA's NHWC pooling kernel, which multiplies by
        # 1/(kh*kw) instead of dividing twice, so boxes may move by float rounding.
        self.memory_format = (
            torch.channels_last
            if weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels scaled as MTCNN's nets take them, in their dtype and memory layout."""
        scaled = ((pixels - 127.5) * 0.0078125).to(self.dtype)
        return scaled.contiguous(memory_format=self.memory_format)

    def crops(
        self, boxes: torch.Tensor, image_inds: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each box clipped to its image, resized to `size` and normalised, with the boxes
        and image indices that have one (a box wholly outside its image has none)."""
        resizer = self.resizer
        clipped = pad(boxes, resizer.width, resizer.height)
        y, ey, x, ex = (torch.as_tensor(v, dtype=torch.int64) for v in clipped)
        kept = ((ey > y - 1) & (ex > x - 1)).to(boxes.device)
        top, bottom, left, right = (v.to(boxes.device)[kept] for v in (y - 1, ey, x - 1, ex))
        pixels = resizer.crops(image_inds[kept], top, bottom, left, right, size)
        return self.normalise(pixels), boxes[kept], image_inds[kept]

    def propose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """P-net over the image pyramid: candidate boxes and their images, NMS'd per scale
        and image, then per image, regressed and squared."""
        height, width = self.resizer.height, self.resizer.width
        mtcnn = self.mtcnn
        scales = _pyramid_scales(height, width, mtcnn.min_face_size, mtcnn.factor)
        if not scales:
            no_boxes = torch.zeros(0, 5, dtype=self.dtype, device=self.resizer.sums.device)
            return no_boxes, no_boxes[:, 0].long()
        boxes_list, inds_list, scale_picks = [], [], []
        offset = 0
        for scale in scales:
            size = (int(height * scale + 1), int(width * scale + 1))
            reg, probs = mtcnn.pnet(self.normalise(self.resizer.resize(*size)))
            boxes, inds = generateBoundingBox(reg, probs[:, 1], scale, self.threshold[0])
            boxes_list.append(boxes)
            inds_list.append(inds)
            scale_picks.append(per_image_nms(boxes[:, :4], boxes[:, 4], inds, 0.5) + offset)
            offset += boxes.shape[0]
        picks = torch.cat(scale_picks, dim=0)
        boxes, image_inds = torch.cat(boxes_list, dim=0)[picks], torch.cat(inds_list, dim=0)[picks]
        pick = per_image_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        qq1 = boxes[:, 0] + boxes[:, 5] * regw
        qq2 = boxes[:, 1] + boxes[:, 6] * regh
        qq3 = boxes[:, 2] + boxes[:, 7] * regw
        qq4 = boxes[:, 3] + boxes[:, 8] * regh
        return rerec(torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)), image_inds

    def refine(
        self, boxes: torch.Tensor, image_inds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """R-net on 24 px crops: the candidates it passes, NMS'd per image, regressed."""
        crops, boxes, image_inds = self.crops(boxes, image_inds, 24)
        if len(boxes) == 0:
            return boxes, image_inds
        out = fixed_batch_process(crops, self.mtcnn.rnet)
        score = out[1].permute(1, 0)[1, :]
        ipass = score > self.threshold[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out[0].permute(1, 0)[:, ipass].permute(1, 0)
        pick = per_image_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        return rerec(bbreg(boxes, mv)), image_inds

    def output(
        self, boxes: torch.Tensor, image_inds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-net on 48 px crops: faces, landmarks and images, NMS'd by the smaller area."""
        crops, boxes, image_inds = self.crops(boxes, image_inds, 48)
        if len(boxes) == 0:
            return boxes, torch.zeros(0, 5, 2, device=boxes.device), image_inds
        out = fixed_batch_process(crops, self.mtcnn.onet)
        score = out[2].permute(1, 0)[1, :]
        ipass = score > self.threshold[2]
        points = out[1].permute(1, 0)[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out[0].permute(1, 0)[:, ipass].permute(1, 0)
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)
        pick = per_image_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        return boxes[pick], points[pick], image_inds[pick]


def detect_faces(mtcnn: MTCNN, images: Any) -> list[RawDetection]:
    """MTCNN's boxes, probabilities and landmarks for each of `images`: uint8 RGB, (H, W, 3)
    or a batch (N, H, W, 3) of one size, as a tensor or an array."""
    with torch.inference_mode():
        stages = Stages(mtcnn, images)
        boxes, image_inds = stages.propose()
        points = torch.zeros(0, 5, 2, device=boxes.device)
        if len(boxes) > 0:
            boxes, image_inds = stages.refine(boxes, image_inds)
        if len(boxes) > 0:
            boxes, points, image_inds = stages.output(boxes, image_inds)
        return _per_image(boxes, points, image_inds, len(stages.resizer.sums))


def _per_image(
    boxes: torch.Tensor, points: torch.Tensor, image_inds: torch.Tensor, batch_size: int
) -> list[RawDetection]:
    all_boxes = boxes.cpu().numpy()
    all_points = points.cpu().numpy()
    inds = image_inds.cpu().numpy()
    results: list[RawDetection] = []
    for image in range(batch_size):
        mine = np.flatnonzero(inds == image)
        if len(mine) == 0:
            results.append(NO_FACE)
        else:
            found = all_boxes[mine]
            results.append((found[:, :4], found[:, 4], all_points[mine]))
    return results

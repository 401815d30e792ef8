"""Per-image NMS for facenet-pytorch's MTCNN, so that a batch partner never changes a box."""

# facenet-pytorch runs NMS over a whole batch at once with the "coordinate trick": each
# image's boxes are shifted by its index times the largest coordinate in the batch, and one
# NMS runs over everything. Its last stage sorts the shifted array's scores with NumPy's
# unstable sort. O-net's probabilities saturate (0.9999993 for two different boxes of one
# face is common), so which of two tied boxes survives depended on the other images in the
# array. In micro-batched requests those are other clients' photos: one face-api.js crop
# (sheldon4.png) got a box 8.8 px taller in some batches than alone, and an import enrolled
# the same photo with an embedding at cosine 0.91 to its embedding alone.
#
# Here each image gets its own NMS over its own boxes, exactly as when it is alone: for a
# batch of one the result is bit-identical to facenet-pytorch's, and for any batch it is the
# result each image would get alone. torchvision already works this way above 1,000 boxes.

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import nms


def per_image_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision's `batched_nms`, computed image by image: kept indices, best first."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.is_cuda:
        # Image by image on the GPU, every `nonzero` and `nms` waits for the device: with
        # MTCNN's one call per pyramid level, a batch of 32 made hundreds of round trips.
        # One copy to the host and back does the same work with none.
        keep = per_image_nms(boxes.cpu(), scores.cpu(), idxs.cpu(), iou_threshold)
        return keep.to(boxes.device, non_blocking=True)
    kept = []
    for image in torch.unique(idxs):
        members = torch.nonzero(idxs == image).flatten()
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    keep = torch.cat(kept)
    # batched_nms returns its picks by decreasing score; a stable sort keeps each image's
    # own order among equal scores.
    return keep[torch.sort(scores[keep], descending=True, stable=True)[1]]


def per_image_nms_numpy(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float, method: str
) -> torch.Tensor:
    """facenet-pytorch's `batched_nms_numpy` ("Union" or "Min" overlap), image by image."""
    from facenet_pytorch.models.utils.detect_face import nms_numpy

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    all_boxes = boxes.cpu().numpy()
    all_scores = scores.cpu().numpy()
    images = idxs.cpu().numpy()
    kept = []
    for image in np.unique(images):
        members = np.flatnonzero(images == image)
        picks = nms_numpy(all_boxes[members], all_scores[members], threshold, method)
        kept.append(members[np.asarray(picks, dtype=np.int64)])
    keep = np.concatenate(kept)
    order = np.argsort(-all_scores[keep], kind="stable")
    return torch.as_tensor(keep[order], dtype=torch.long, device=boxes.device)

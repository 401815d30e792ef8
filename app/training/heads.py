"""Margin classification heads (ArcFace, CosFace) and a batch-hard triplet loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Keeps sqrt(1 - cos^2) differentiable when cos reaches exactly +-1.
_SINE_EPS = 1e-7


class _NormalisedLinear(nn.Module):
    """Class-centre weights whose logits are cosines between unit vectors."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        if embedding_dim < 1 or num_classes < 1:
            raise ValueError("embedding_dim and num_classes must be positive")
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        # Margins and a scale of 64 are too sharp for bf16/fp16: always compute in >= fp32.
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(embeddings.device.type, enabled=False):
            e = F.normalize(embeddings.to(dtype), dim=1)
            w = F.normalize(self.weight.to(dtype), dim=1)
            return F.linear(e, w)

    def _target_mask(self, labels: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
        if labels.shape != (cosine.shape[0],):
            raise ValueError("labels must be a 1-d tensor with one label per embedding")
        return F.one_hot(labels.long(), self.num_classes).to(torch.bool)

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}"
        )


class ArcFaceHead(_NormalisedLinear):
    """Additive angular margin: the true-class logit is s * cos(theta + m)."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, margin)
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError("ArcFace margin must be in [0, pi/2)")
        self.easy_margin = easy_margin
        self._cos_m = math.cos(margin)
        self._sin_m = math.sin(margin)
        # cos(theta + m) stops decreasing once theta + m > pi; past that point (cos < th) the
        # InsightFace fallback cos(theta) - m*sin(m) keeps the target logit monotonic in theta.
        self._th = math.cos(math.pi - margin)
        self._mm = math.sin(math.pi - margin) * margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings)
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=_SINE_EPS))
        phi = cosine * self._cos_m - sine * self._sin_m
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self._th, phi, cosine - self._mm)
        target = self._target_mask(labels, cosine)
        return torch.where(target, phi, cosine) * self.scale


class CosFaceHead(_NormalisedLinear):
    """Additive cosine margin: the true-class logit is s * (cos(theta) - m)."""

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, margin)
        if margin < 0:
            raise ValueError("CosFace margin must be non-negative")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings)
        target = self._target_mask(labels, cosine)
        return (cosine - target.to(cosine.dtype) * self.margin) * self.scale


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2
) -> torch.Tensor:
    """Mean of relu(d(a, hardest p) - d(a, hardest n) + margin) over L2-normalised embeddings.

    Anchors without a positive or without a negative in the batch are skipped; a batch with
    no valid anchor returns a zero that still carries a gradient graph.
    """
    if labels.shape != (embeddings.shape[0],):
        raise ValueError("labels must be a 1-d tensor with one label per embedding")
    e = F.normalize(embeddings, dim=1)
    # On the unit sphere |a - b|^2 = 2 - 2 a.b; the clamp keeps sqrt's gradient finite at 0.
    distances = torch.sqrt((2.0 - 2.0 * e @ e.T).clamp(min=1e-12))
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & not_self
    negative = ~same
    hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    losses = F.relu(hardest_positive[valid] - hardest_negative[valid] + margin)
    return losses.mean()

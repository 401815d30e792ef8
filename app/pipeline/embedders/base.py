"""Embedder base class: aligned face crops in, L2-normalised embeddings out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from app.pipeline.embedders.precision import autocast, precision_name
from app.pipeline.types import AlignTemplate, FloatArray, ImageArray

if TYPE_CHECKING:
    from app.pipeline.embedders.registry import ModelSpec, Thresholds


def make_template(size: int, points: Sequence[Sequence[float]]) -> AlignTemplate:
    """An AlignTemplate whose points cannot be changed by accident (it is shared by class)."""
    array = np.asarray(points, dtype=np.float32).reshape(5, 2)
    array.setflags(write=False)
    return AlignTemplate(size=size, points=array)


class Embedder(ABC):
    """One face-recognition network; subclasses say how to build it and scale its input."""

    name: ClassVar[str]
    template: ClassVar[AlignTemplate]
    embedding_dim: ClassVar[int] = 512
    # Input scaling: pixel -> (pixel - input_mean) / input_std, as each model was trained.
    input_mean: ClassVar[float] = 127.5
    input_std: ClassVar[float]

    def __init__(
        self,
        module: torch.nn.Module,
        device: torch.device,
        weights_sha256: str,
        default_thresholds: Thresholds,
        precision: torch.dtype | None = None,
    ) -> None:
        self.module = module.to(device).eval()
        if device.type == "cpu":
            # Convolutions run 10-30% faster on NHWC tensors on the CPU; outputs are the same.
            self.module.to(memory_format=torch.channels_last)
        self.device = device
        # The autocast dtype of embed(); None is fp32. forward() (fine-tuning) ignores it.
        self.precision = precision
        self.weights_sha256 = weights_sha256
        # The version keys the FAISS index and stored embeddings, so new weights never mix.
        self.version = f"{self.name}@{weights_sha256[:12]}"
        self.default_thresholds = default_thresholds

    @classmethod
    @abstractmethod
    def load_pretrained(cls, path: Path) -> torch.nn.Module:
        """Build the network from the registry's weights file (already checksummed)."""

    @classmethod
    @abstractmethod
    def architecture(cls, spec: ModelSpec, models_dir: Path) -> torch.nn.Module:
        """Build the network whose state_dict keys match a fine-tuned checkpoint."""

    def preprocess(self, faces: Sequence[ImageArray]) -> torch.Tensor:
        """Aligned uint8 RGB crops -> float NCHW batch on the device, scaled for the model."""
        size = self.template.size
        for face in faces:
            if face.shape != (size, size, 3) or face.dtype != np.uint8:
                raise ValueError(
                    f"{self.name} expects uint8 RGB crops of shape ({size}, {size}, 3), "
                    f"got {face.dtype} {face.shape}"
                )
        if not faces:
            return torch.empty((0, 3, size, size), device=self.device)
        # Ship uint8 to the device and convert there: a quarter of the bytes over PCIe.
        batch = torch.from_numpy(np.stack(faces)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float()
        batch = (batch - self.input_mean) / self.input_std
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    @property
    def precision_name(self) -> str:
        return precision_name(self.precision)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw embeddings for a preprocessed batch; differentiable, for fine-tuning."""
        output: torch.Tensor = self.module(batch)
        return output

    def embed(self, faces: Sequence[ImageArray]) -> FloatArray:
        """(n, embedding_dim) float32 unit vectors for aligned crops, in one forward pass."""
        if not faces:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            batch = self.preprocess(faces)
            with autocast(self.device, self.precision):
                raw = self.forward(batch)
            vectors = F.normalize(raw.float(), dim=1)
            result: FloatArray = vectors.cpu().numpy().astype(np.float32, copy=False)
        return result

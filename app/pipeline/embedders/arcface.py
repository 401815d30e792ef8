"""ArcFace MobileFaceNet (insightface buffalo_s, WebFace600K), converted from ONNX to torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from app.errors import ModelError
from app.pipeline.embedders.base import Embedder, make_template
from app.pipeline.embedders.weights import locate_weights, verify_file
from app.pipeline.types import AlignTemplate

if TYPE_CHECKING:
    from app.pipeline.embedders.registry import ModelSpec

# insightface's arcface_dst: where the 5 landmarks sit in the 112x112 crops it trained on.
ARCFACE_POINTS = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


class ArcfaceEmbedder(Embedder):
    """w600k_mbf: 112x112 RGB in, 512-d out; the ONNX graph has no built-in normalisation."""

    name: ClassVar[str] = "arcface-mbf"
    template: ClassVar[AlignTemplate] = make_template(112, ARCFACE_POINTS)
    input_std: ClassVar[float] = 127.5

    @classmethod
    def load_pretrained(cls, path: Path) -> torch.nn.Module:
        # Imported here: onnx2torch brings torchvision, seconds that a service loading its
        # saved TorchScript copy skips (app/pipeline/embedders/saved_traces.py).
        import onnx
        from onnx2torch import convert

        try:
            graph = onnx.load(str(path))
            module: torch.nn.Module = convert(graph)
        except Exception as exc:  # onnx and onnx2torch raise many unrelated types
            raise ModelError(f"cannot convert {path} to torch: {exc}") from exc
        return module

    @classmethod
    def architecture(cls, spec: ModelSpec, models_dir: Path) -> torch.nn.Module:
        # The network only exists as an ONNX graph, so a fine-tuned state_dict is poured
        # into a fresh conversion of the (checksummed) pretrained file.
        path = locate_weights(spec, models_dir)
        if not path.is_file():
            raise ModelError(f"{path} missing: reinstall package {spec.package}")
        verify_file(path, spec.sha256)
        return cls.load_pretrained(path)

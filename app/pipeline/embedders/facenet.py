"""FaceNet InceptionResnetV1 trained on VGGFace2 (facenet-pytorch's port of Sandberg's model)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from app.errors import ModelError
from app.pipeline.embedders.arcface import ARCFACE_POINTS
from app.pipeline.embedders.base import Embedder, make_template
from app.pipeline.embedders.weights import read_state_dict
from app.pipeline.types import AlignTemplate

if TYPE_CHECKING:
    from app.pipeline.embedders.registry import ModelSpec

FACENET_SIZE = 160
# facenet was trained on loose MTCNN box crops (face plus margin), not tight ArcFace crops:
# scale the ArcFace points to 160 px, then pull them 20% towards the centre so the face
# fills less of the frame, roughly as in those box crops.
_SHRINK = 0.8
_CENTRE = FACENET_SIZE / 2
FACENET_POINTS = tuple(
    tuple(_CENTRE + _SHRINK * (v * FACENET_SIZE / 112 - _CENTRE) for v in point)
    for point in ARCFACE_POINTS
)


class FacenetEmbedder(Embedder):
    """InceptionResnetV1: 160x160 RGB in, 512-d out (already L2-normalised by the network)."""

    name: ClassVar[str] = "facenet-vggface2"
    template: ClassVar[AlignTemplate] = make_template(FACENET_SIZE, FACENET_POINTS)
    # facenet-pytorch's fixed_image_standardization.
    input_std: ClassVar[float] = 128.0

    @classmethod
    def load_pretrained(cls, path: Path) -> torch.nn.Module:
        module = _network()
        # The release carries the VGGFace2 identity classifier; we only want embeddings.
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("logits.")}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{path} does not fit InceptionResnetV1: {exc}") from exc
        return module

    @classmethod
    def architecture(cls, spec: ModelSpec, models_dir: Path) -> torch.nn.Module:
        return _network()


def _network() -> torch.nn.Module:
    # Imported here: facenet-pytorch brings torchvision (see arcface.load_pretrained).
    from facenet_pytorch import InceptionResnetV1

    # pretrained=None: facenet-pytorch would otherwise download weights in the constructor.
    module: torch.nn.Module = InceptionResnetV1(pretrained=None, classify=False)
    return module

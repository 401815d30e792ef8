"""Face embedders: one module per network, a registry of their weights, and a factory."""

from app.pipeline.embedders.base import Embedder
from app.pipeline.embedders.registry import (
    ModelSpec,
    Thresholds,
    available_embedders,
    create_embedder,
    load_model_specs,
    resolve_device,
    resolve_embedder_name,
)

__all__ = [
    "Embedder",
    "ModelSpec",
    "Thresholds",
    "available_embedders",
    "create_embedder",
    "load_model_specs",
    "resolve_device",
    "resolve_embedder_name",
]

"""Model specs from models/registry.json and the factory that builds embedders from them."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import REPO_MODELS_DIR
from app.errors import ModelError
from app.pipeline.embedders.arcface import ArcfaceEmbedder
from app.pipeline.embedders.base import Embedder
from app.pipeline.embedders.facenet import FacenetEmbedder
from app.pipeline.embedders.precision import inference_dtype
from app.pipeline.embedders.saved_traces import SavedTraces
from app.pipeline.embedders.weights import locate_weights, read_state_dict, verify_file

REGISTRY_FILE = "registry.json"
DEFAULT_EMBEDDER = "facenet-vggface2"
FALLBACK_EMBEDDER = "arcface-mbf"

_EMBEDDERS: dict[str, type[Embedder]] = {
    cls.name: cls for cls in (FacenetEmbedder, ArcfaceEmbedder)
}


class Thresholds(BaseModel):
    """Cosine-similarity thresholds an embedder ships with until calibrated locally."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verify: float = Field(ge=-1.0, le=1.0)
    identify: float = Field(ge=-1.0, le=1.0)


class ModelSpec(BaseModel):
    """One registry entry: where a model's weights live, what they hash to, and their terms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["file", "package"]
    # For kind "file": relative to the models folder; for "package": inside the package folder.
    file: str
    package: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    source: str
    licence: str
    embedding_dim: int = Field(gt=0)
    input_size: int = Field(gt=0)
    default_thresholds: Thresholds


def load_model_specs(models_dir: Path) -> dict[str, ModelSpec]:
    """Specs by name; a registry.json in models_dir overrides the one shipped in the repo."""
    path = models_dir / REGISTRY_FILE
    if not path.is_file():
        # An operator's models folder usually holds weights only; the registry ships with code.
        path = REPO_MODELS_DIR / REGISTRY_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        specs = [ModelSpec.model_validate(entry) for entry in entries]
    except (OSError, ValueError, ValidationError) as exc:
        raise ModelError(f"cannot read model registry {path}: {exc}") from exc
    return {spec.name: spec for spec in specs}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise the named device, if usable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} requested but CUDA is not available")
    return device


def available_embedders(models_dir: Path) -> list[str]:
    """Names of known embedders whose weights are present now (not checksummed: cheap)."""
    specs = _known_specs(models_dir)
    return [name for name, spec in specs.items() if _weights_present(spec, models_dir)]


def resolve_embedder_name(name: str, models_dir: Path) -> str:
    """'auto' -> facenet when its weights file exists, else arcface; unknown -> ModelError."""
    specs = _known_specs(models_dir)
    if name == "auto":
        preferred = specs.get(DEFAULT_EMBEDDER)
        if preferred is not None and _weights_present(preferred, models_dir):
            return DEFAULT_EMBEDDER
        return FALLBACK_EMBEDDER
    if name not in specs:
        known = ", ".join(sorted(specs))
        raise ModelError(f"unknown embedder {name!r}; known: auto, {known}")
    return name


def create_embedder(
    name: str,
    models_dir: Path,
    device: torch.device,
    weights_path: Path | None = None,
    expected_sha256: str | None = None,
    precision: str = "fp32",
    torchscript: bool = True,
    saved: SavedTraces | None = None,
    build: bool = True,
) -> Embedder:
    """Checksum, load and place an embedder; weights_path loads a fine-tuned state_dict.

    `precision` (auto, fp32, bf16, fp16) is the format embed() infers in; `torchscript`
    whether embed() runs a TorchScript copy of the network; `saved`, for the service only,
    where such copies are kept between starts (Embedder.serve_saved); `build` False
    leaves the network to be built on first use when no saved copy serves.
    """
    dtype = inference_dtype(precision, device)
    spec = _known_specs(models_dir)[resolve_embedder_name(name, models_dir)]
    cls = _EMBEDDERS[spec.name]
    if weights_path is None:
        path = locate_weights(spec, models_dir)
        if not path.is_file():
            raise ModelError(
                f"weights for {spec.name} not found at {path}; "
                f"run `python -m app models fetch {spec.name}`"
            )
        load = functools.partial(cls.load_pretrained, path)
        sha256 = spec.sha256
    else:
        if expected_sha256 is None:
            raise ValueError("expected_sha256 is required with weights_path")
        if not weights_path.is_file():
            raise ModelError(f"fine-tuned weights for {spec.name} not found at {weights_path}")
        path = weights_path
        load = functools.partial(_fine_tuned, cls, spec, models_dir, weights_path)
        sha256 = expected_sha256
    checked = path.stat()
    verify_file(path, sha256)
    module = functools.partial(_load_unchanged, load, path, sha256, checked)
    embedder = cls(
        module, device, sha256, spec.default_thresholds, dtype, torchscript, licence=spec.licence
    )
    # A service with a saved TorchScript copy of these weights never builds the network;
    # otherwise it is built now, so that a file that will not load fails here.
    if (saved is None or not embedder.serve_saved(saved)) and build:
        embedder.build_module()
    return embedder


def _load_unchanged(
    load: Callable[[], torch.nn.Module], path: Path, sha256: str, checked: os.stat_result
) -> torch.nn.Module:
    """`load()`, hashing the weights again first only if their file changed since
    create_embedder checked it: the network may be built long after (a service's, when it
    comes to serve), or at once (a command's, which need not hash the file twice)."""
    now = path.stat()
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (
        checked.st_ino,
        checked.st_size,
        checked.st_mtime_ns,
    ):
        verify_file(path, sha256)
    return load()


def _fine_tuned(
    cls: type[Embedder], spec: ModelSpec, models_dir: Path, weights_path: Path
) -> torch.nn.Module:
    module = cls.architecture(spec, models_dir)
    try:
        module.load_state_dict(read_state_dict(weights_path), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path} does not fit {spec.name}: {exc}") from exc
    return module


def _known_specs(models_dir: Path) -> dict[str, ModelSpec]:
    """Registry entries that have an implementation here."""
    return {n: s for n, s in load_model_specs(models_dir).items() if n in _EMBEDDERS}


def _weights_present(spec: ModelSpec, models_dir: Path) -> bool:
    try:
        return locate_weights(spec, models_dir).is_file()
    except ModelError:
        return False
